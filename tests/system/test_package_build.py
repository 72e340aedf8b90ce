"""The .deb: built by debian/build-deb (or taken from WGMESH_DEB), then checked
as a file: what it installs where, with which modes and shebangs, what it
depends on (satisfiable on bookworm and trixie), that lintian finds no error,
and what its maintainer scripts do on install, upgrade, remove and purge
(run against stub systemctl/wgmesh in a private mount namespace)."""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.system.debbuild import DEBIAN_PATH

pytestmark = pytest.mark.system

PROJECT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())
COMMANDS = [Path(p).name for p in PYPROJECT["tool"]["setuptools"]["script-files"]]
UNITS = sorted(p.name for p in (PROJECT / "units").iterdir() if p.is_file())
DIST_PACKAGES = "usr/lib/python3/dist-packages"

# What the package meets: bookworm as installed here, trixie from LAB-NOTES.
RELEASES = {
    "bookworm": {"python3": "3.11.2-1+b1", "python3-pyroute2": "0.7.2-2", "python3-icmplib": "2.1.1-2",
                 "python3-click": "8.1.3-2", "python3-tomli-w": "1.0.0-2", "python3-tomlkit": "0.11.7-1",
                 "python3-systemd": "235-1+b2",
                 "bird2": "2.0.12-7", "wireguard-tools": "1.0.20210914-1+b1", "wireguard-go": "0.0.20220316-1+b4",
                 "python3-cryptography": "38.0.4-3+deb12u1", "nftables": "1.0.6-2+deb12u2", "systemd": "252.39-1~deb12u1",
                 "iproute2": "6.1.0-3"},
    # Upstream versions from LAB-NOTES; Debian revisions assumed.
    "trixie": {"python3": "3.13.5-1", "python3-pyroute2": "0.7.7-1", "python3-icmplib": "2.1.1-1",
               "python3-click": "8.1.8-1", "python3-tomli-w": "1.0.0-1", "python3-tomlkit": "0.13.2-1",
               "python3-systemd": "235-1",
               "bird2": "2.17.6-1", "wireguard-tools": "1.0.20210914-1", "wireguard-go": "0.0.20231211-1",
               "python3-cryptography": "43.0.0-3", "nftables": "1.1.3-1", "systemd": "257.9-1~deb13u1",
               "iproute2": "6.15.0-1"},
}
REQUIRED_DEPENDS = {"python3", "python3-pyroute2", "python3-icmplib", "python3-tomli-w", "python3-tomlkit",
                    "python3-systemd", "python3-click", "bird2", "wireguard-tools", "nftables", "python3-cryptography",
                    "iproute2"}


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("env", dict(os.environ, PATH=DEBIAN_PATH, LC_ALL="C.UTF-8"))
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def root(deb: Path, tmp_path_factory) -> Path:
    """The package unpacked: its files, and its control files in DEBIAN/."""
    root = tmp_path_factory.mktemp("unpacked")
    result = run("dpkg-deb", "-R", str(deb), str(root))
    assert result.returncode == 0, result.stderr
    return root


def field(deb: Path, name: str) -> str:
    result = run("dpkg-deb", "-f", str(deb), name)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def relations(value: str) -> list[list[tuple[str, str | None, str | None]]]:
    """'a (>= 1) | b, c' -> [[(a, >=, 1), (b, None, None)], [(c, None, None)]]"""
    parsed = []
    for group in filter(None, (g.strip() for g in value.split(","))):
        alternatives = []
        for alternative in group.split("|"):
            match = re.fullmatch(r"\s*([a-z0-9][a-z0-9+.-]*)(?::any)?\s*(?:\((<<|<=|=|>=|>>)\s*([^)\s]+)\s*\))?\s*",
                                 alternative)
            assert match, f"cannot parse relation {alternative!r}"
            alternatives.append(match.groups())
        parsed.append(alternatives)
    return parsed


def satisfied(release: dict[str, str], name: str, op: str | None, version: str | None) -> bool:
    if name not in release:
        return False
    if op is None:
        return True
    return run("dpkg", "--compare-versions", release[name], {"<<": "lt", "<=": "le", "=": "eq", ">=": "ge",
                                                               ">>": "gt"}[op], version).returncode == 0


# --- control fields ---------------------------------------------------------


def test_control_fields(deb: Path) -> None:
    assert field(deb, "Package") == "wgmesh"
    assert field(deb, "Architecture") == "all"
    if not os.environ.get("WGMESH_DEB"):
        changelog = run("dpkg-parsechangelog", "-l", str(PROJECT / "debian/changelog"), "-S", "Version")
        assert field(deb, "Version") == changelog.stdout.strip()


def test_depends_are_debian_packages_satisfiable_on_bookworm_and_trixie(deb: Path) -> None:
    depends = relations(field(deb, "Depends"))
    names = {alternative[0] for group in depends for alternative in group}
    assert REQUIRED_DEPENDS <= names, f"missing: {REQUIRED_DEPENDS - names}"
    assert "wireguard-go" not in names, "wireguard-go belongs in Recommends (kernel-module hosts drop it)"
    assert any(a == ("python3", ">=", "3.11") for g in depends for a in g), field(deb, "Depends")
    for release_name, release in RELEASES.items():
        for group in depends:
            assert any(satisfied(release, *alternative) for alternative in group), \
                f"{release_name} cannot satisfy {group} (a PyPI name or a version bound dh-python carried over?)"


def test_recommends_wireguard_go_and_apprise(deb: Path) -> None:
    assert relations(field(deb, "Recommends")) == [[("wireguard-go", None, None)], [("apprise", None, None)]]


# --- files --------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_command_installed_with_debians_python(root: Path, command: str) -> None:
    path = root / "usr/bin" / command
    assert path.is_file(), f"/usr/bin/{command} is missing"
    assert path.stat().st_mode & 0o777 == 0o755
    assert path.read_text().splitlines()[0] == "#!/usr/bin/python3"
    assert (root / "usr/share/man/man1" / f"{command}.1.gz").is_file(), f"no man page for {command}"


@pytest.mark.parametrize("command", COMMANDS)
def test_command_runs_from_the_package(root: Path, command: str) -> None:
    """Each command's --help works with the packaged library and Debian's
    python3 with Debian's modules (the runtime the Depends promise)."""
    env = dict(os.environ, PATH=DEBIAN_PATH, PYTHONPATH=str(root / DIST_PACKAGES), LC_ALL="C.UTF-8")
    env.pop("VIRTUAL_ENV", None)
    result = run("/usr/bin/python3", str(root / "usr/bin" / command), "--help", env=env)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_library_in_dist_packages(root: Path) -> None:
    library = root / DIST_PACKAGES / "wgmesh_common"
    expected = sorted(p.relative_to(PROJECT / "lib").as_posix()
                      for p in (PROJECT / "lib/wgmesh_common").rglob("*.py"))
    installed = sorted(p.relative_to(root / DIST_PACKAGES).as_posix() for p in library.rglob("*.py"))
    assert installed == expected
    assert not list(root.rglob("__pycache__")) and not list(root.rglob("*.pyc")), "byte code is shipped"
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import wgmesh_common.commands.wgmesh as m; "
             "assert m.__file__.startswith(sys.argv[1]), m.__file__")
    result = run("/usr/bin/python3", "-I", "-c", probe, str(root / DIST_PACKAGES))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_installed(root: Path, unit: str) -> None:
    path = root / "usr/lib/systemd/system" / unit
    assert path.is_file(), f"{unit} is not in /usr/lib/systemd/system"
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.read_bytes() == (PROJECT / "units" / unit).read_bytes()


def test_no_unit_outside_usr_lib(root: Path) -> None:
    assert not (root / "lib").exists(), "files in /lib: the units belong in /usr/lib/systemd/system"
    assert not (root / "etc/systemd").exists(), "the package must enable nothing"


def test_generator_executable_and_its_targets_resolve(root: Path) -> None:
    generator = root / "usr/lib/systemd/system-generators/wgmesh-generator"
    assert generator.is_file()
    assert generator.stat().st_mode & 0o777 == 0o755
    assert generator.read_text().splitlines()[0] == "#!/usr/bin/python3 -I"
    source = (root / DIST_PACKAGES / "wgmesh_common/generator.py").read_text()
    unit_dir = re.search(r'^UNIT_DIR = "([^"]+)"', source, re.MULTILINE).group(1)
    template = re.search(r'^LINK_TEMPLATE = "([^"]+)"', source, re.MULTILINE).group(1)
    # The generator's symlinks point at these absolute paths.
    for unit in (template, "wgmesh.target"):
        assert (root / unit_dir.lstrip("/") / unit).is_file(), f"{unit_dir}/{unit} is not in the package"


def test_generator_runs_from_the_package(root: Path, tmp_path: Path) -> None:
    """An uninitialised node: the generator writes nothing and says nothing."""
    env = dict(os.environ, PATH=DEBIAN_PATH, WGMESH_ROOT=str(root), LC_ALL="C.UTF-8")
    out = tmp_path / "normal"
    out.mkdir()
    # -I ignores PYTHONPATH, so run the file with the package's library first on the path.
    code = (f"import sys; sys.path.insert(0, {str(root / DIST_PACKAGES)!r}); sys.argv = ['wgmesh-generator', "
            f"{str(out)!r}]; exec(compile(open({str(root / 'usr/lib/systemd/system-generators/wgmesh-generator')!r})"
            ".read(), 'wgmesh-generator', 'exec'))")
    result = run("/usr/bin/python3", "-I", "-c", code, env=env)
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert not list(out.iterdir())


def test_conffile(root: Path) -> None:
    conffiles = (root / "DEBIAN/conffiles").read_text().split()
    assert conffiles == ["/etc/wgmesh/wgmesh.toml"]
    assert (root / "etc/wgmesh/wgmesh.toml").read_bytes() == (PROJECT / "etc/wgmesh/wgmesh.toml").read_bytes()
    assert (root / "etc/wgmesh/wgmesh.toml").stat().st_mode & 0o777 == 0o644


def test_docs(root: Path) -> None:
    doc = root / "usr/share/doc/wgmesh"
    # The units' Documentation= link: uncompressed.
    assert (doc / "README.md").is_file()
    assert (doc / "copyright").is_file()
    assert (doc / "changelog.Debian.gz").is_file()
    # Imported into Grafana as it is: uncompressed.
    assert (doc / "grafana-wgmesh.json").read_bytes() == (PROJECT / "doc/grafana-wgmesh.json").read_bytes()


def test_state_directory(root: Path) -> None:
    # The units' ReadWritePaths=/var/lib/wgmesh fail to start when it is missing.
    assert (root / "var/lib/wgmesh").is_dir()


def test_nothing_unexpected(root: Path) -> None:
    top = {p.name for p in root.iterdir()}
    assert top == {"DEBIAN", "etc", "usr", "var"}, top
    assert {p.name for p in (root / "usr").iterdir()} == {"bin", "lib", "share"}
    assert {p.name for p in (root / "usr/bin").iterdir()} == set(COMMANDS)


def test_lintian_reports_no_error(deb: Path) -> None:
    assert shutil.which("lintian", path=DEBIAN_PATH), "lintian is not installed (tests/run installs it)"
    targets = [str(deb)] + [str(p) for p in deb.parent.glob(deb.name.replace("_all.deb", "_*.changes"))]
    result = run("lintian", "--fail-on", "error", "--no-tag-display-limit", *targets, timeout=600)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert not errors and result.returncode == 0, result.stdout + result.stderr


# --- maintainer scripts ---------------------------------------------------------


def test_maintainer_scripts_are_strict_sh(root: Path) -> None:
    for script in ("postinst", "prerm", "postrm"):
        path = root / "DEBIAN" / script
        text = path.read_text()
        assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text, script
        assert path.stat().st_mode & 0o777 == 0o755
        assert run("sh", "-n", str(path)).returncode == 0, script


STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$WGMESH_TEST_LOG"
exit {status}
"""
STUBBED = ("systemctl", "deb-systemd-invoke", "systemd-sysctl", "systemd-sysusers", "wgmesh", "wgmesh-link", "nft", "py3compile",
           "py3clean")
INITIALISED = "[node]\nid = 2\n"
UNINITIALISED = "[node]\n#id = 0\n"
STATE = ("/etc/wgmesh", "/var/lib/wgmesh", "/run/wgmesh")


class Scripts:
    """Runs the package's maintainer scripts in a private mount namespace:
    /run is a fresh tmpfs, /etc and /var/lib are overlays whose changes live
    in that tmpfs, and systemctl, deb-systemd-invoke, wgmesh, wgmesh-link and
    py3compile are stubs that only log their arguments. On the host nothing
    is started, stopped, written or deleted."""

    def __init__(self, root: Path, tmp: Path):
        self.root = root
        self.stubs = tmp / "stubs"
        self.stubs.mkdir()
        self.log = tmp / "calls.log"

    def run(self, script: str, *args: str, config: str | None = None, systemd: bool = True,
            failing: str = "") -> tuple[int, list[str], dict[str, bool]]:
        for name in STUBBED:
            (self.stubs / name).write_text(STUB.format(status=1 if name == failing else 0))
            (self.stubs / name).chmod(0o755)
        self.log.write_text("")
        setup = [
            "set -e",
            "mount -t tmpfs tmpfs /run",
            "mkdir -p /run/.ov/etc/upper /run/.ov/etc/work /run/.ov/var/upper /run/.ov/var/work",
            "mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/.ov/etc/upper,workdir=/run/.ov/etc/work /etc",
            ("mount -t overlay overlay -o lowerdir=/var/lib,upperdir=/run/.ov/var/upper,workdir=/run/.ov/var/work"
             " /var/lib"),
            "rm -rf /etc/wgmesh /var/lib/wgmesh",
            "mkdir -p /etc/wgmesh/links /var/lib/wgmesh /run/wgmesh",
            "echo secret > /etc/wgmesh/links/wg0.key",
        ]
        if systemd:
            setup.append("mkdir -p /run/systemd/system")
        if config is not None:
            setup.append(f"printf '{config}' > /etc/wgmesh/wgmesh.toml")
        setup.append('echo SETUP-OK >> "$WGMESH_TEST_LOG"; set +e')
        after = "; ".join(f'[ -e {p} ] && echo EXISTS {p} >> "$WGMESH_TEST_LOG"' for p in STATE)
        body = "\n".join(setup) + f"\n{self.root}/DEBIAN/{script} {' '.join(args)}\nrc=$?\n{after}\nexit $rc\n"
        # The scripts' python3 imports wgmesh_common from the package under test.
        env = {"PATH": f"{self.stubs}:{DEBIAN_PATH}", "WGMESH_TEST_LOG": str(self.log), "LC_ALL": "C.UTF-8",
               "PYTHONPATH": str(self.root / "usr/lib/python3/dist-packages")}
        result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", body],
                                env=env, capture_output=True, text=True)
        lines = self.log.read_text().splitlines()
        assert lines[:1] == ["SETUP-OK"], f"the private mount namespace could not be set up: {result.stderr}"
        # py3compile/py3clean come from dh_python3's snippets: not ours to check.
        calls = [l for l in lines[1:] if not l.startswith(("EXISTS ", "py3compile ", "py3clean "))]
        exists = {p: f"EXISTS {p}" in lines for p in STATE}
        return result.returncode, calls, exists


@pytest.fixture
def scripts(root: Path, tmp_path: Path) -> Scripts:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private mount namespace")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode:
        pytest.skip("cannot make a mount namespace here")
    return Scripts(root, tmp_path)


def restarts(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("deb-systemd-invoke") or
            (c.startswith("systemctl") and "daemon-reload" not in c and "is-" not in c)]


def test_fresh_install_only_reloads(scripts: Scripts) -> None:
    rc, calls, _ = scripts.run("postinst", "configure", "", config=UNINITIALISED)
    assert rc == 0
    assert "systemctl --system daemon-reload" in calls
    assert "systemd-sysctl /usr/lib/sysctl.d/50-wgmesh.conf" in calls
    assert not restarts(calls) and not any(c.startswith("wgmesh") for c in calls), calls


def test_install_without_systemd_calls_nothing(scripts: Scripts) -> None:
    rc, calls, _ = scripts.run("postinst", "configure", "0.1.0-1", config=INITIALISED, systemd=False)
    assert rc == 0
    assert not [c for c in calls if c.startswith(("systemctl", "deb-systemd-invoke", "systemd-sysctl"))], calls


def test_the_inotify_limit_for_wireguard_go_is_shipped(root: Path) -> None:
    # One inotify instance per wireguard-go: the kernel's 128 stops a node at a few dozen links.
    conf = (root / "usr/lib/sysctl.d/50-wgmesh.conf").read_text()
    settings = dict(line.split(" = ") for line in conf.splitlines() if line and not line.startswith("#"))
    assert int(settings["fs.inotify.max_user_instances"]) >= 1024


def test_upgrade_of_an_initialised_node_keeps_the_links(scripts: Scripts) -> None:
    rc, calls, _ = scripts.run("postinst", "configure", "0.1.0-1", config=INITIALISED)
    assert rc == 0
    assert calls.index("wgmesh migrate --quiet") < calls.index("systemctl --system daemon-reload")
    after_reload = calls[calls.index("systemctl --system daemon-reload"):]
    assert "deb-systemd-invoke try-restart wgmesh-join-helper.service wgmesh-join-server.service" in after_reload
    assert "deb-systemd-invoke try-reload-or-restart wgmesh-bird.service" in after_reload
    assert any("try-restart" in c and "wgmesh-prober.timer" in c and "wgmesh-cost-writer.path" in c
               for c in after_reload), calls
    # vxlan-sync restarts (its overlay devices stay), after the node's rules are refreshed.
    assert calls.index("wgmesh-link loopback up") < calls.index(
        "deb-systemd-invoke try-restart wgmesh-vxlan-sync.service"), calls
    touched = " ".join(c for c in restarts(calls) if "wgmesh-vxlan-sync" not in c)
    for kept in ("wgmesh-link@", "wgmesh-node.service", "wgmesh.target"):
        assert kept not in touched, f"an upgrade must not restart {kept}: {calls}"
    assert not any(" restart " in f" {c} " or " stop " in f" {c} " for c in restarts(calls)), calls


def test_upgrade_of_an_uninitialised_node_migrates_nothing(scripts: Scripts) -> None:
    rc, calls, _ = scripts.run("postinst", "configure", "0.1.0-1", config=UNINITIALISED)
    assert rc == 0
    assert not any(c.startswith("wgmesh") for c in calls) and not restarts(calls), calls


def test_failed_migration_fails_loud_and_restarts_nothing(scripts: Scripts) -> None:
    rc, calls, _ = scripts.run("postinst", "configure", "0.1.0-1", config=INITIALISED, failing="wgmesh")
    assert rc != 0
    assert not restarts(calls), calls


def test_remove_stops_everything(scripts: Scripts) -> None:
    rc, calls, _ = scripts.run("prerm", "remove", config=INITIALISED)
    assert rc == 0
    stops = [c for c in calls if c.startswith(("deb-systemd-invoke stop", "systemctl stop"))]
    stopped = " ".join(stops)
    for unit in ("wgmesh.target", "wgmesh-link@*.service", "wgmesh-bird.service", "wgmesh-join-server.socket",
                 "wgmesh-join-server.service", "wgmesh-prober.timer", "wgmesh-cost-writer.path",
                 "wgmesh-vxlan-sync.service", "wgmesh-node.service", "wgmesh-mesh.timer",
                 "wgmesh-join-helper.socket", "wgmesh-join-helper.service"):
        assert unit in stopped, f"{unit} is not stopped on remove: {calls}"
    assert "wgmesh-link loopback down" in calls


def test_remove_tolerates_no_systemd_and_no_init(scripts: Scripts) -> None:
    rc, calls, _ = scripts.run("prerm", "remove", systemd=False)
    assert rc == 0 and not calls, calls
    rc, calls, _ = scripts.run("prerm", "remove", config=INITIALISED, systemd=False, failing="wgmesh")
    assert rc == 0 and "wgmesh down" in calls, calls


def test_remove_tolerates_failing_tools(scripts: Scripts) -> None:
    rc, calls, _ = scripts.run("prerm", "remove", config=INITIALISED, failing="deb-systemd-invoke")
    assert rc == 0, calls


def test_upgrade_prerm_stops_nothing(scripts: Scripts) -> None:
    rc, calls, _ = scripts.run("prerm", "upgrade", "0.1.0-1+upgrade1", config=INITIALISED)
    assert rc == 0
    assert not restarts(calls) and not any(c.startswith("wgmesh") for c in calls), calls


def test_remove_keeps_config_and_purge_deletes_it(scripts: Scripts) -> None:
    rc, calls, exists = scripts.run("postrm", "remove", config=INITIALISED)
    # Configuration, keys and durable state stay; runtime state goes.
    assert rc == 0 and exists == {"/etc/wgmesh": True, "/var/lib/wgmesh": True, "/run/wgmesh": False}, exists
    assert "systemctl --system daemon-reload" in calls
    assert "nft -f -" in calls  # the firewall table goes too
    rc, calls, exists = scripts.run("postrm", "purge", config=INITIALISED)
    assert rc == 0 and not any(exists.values()), exists


def test_the_join_api_front_end_user_is_made_by_sysusers(root: Path) -> None:
    # wgmesh-join-server.service runs as "wgmesh"; the package makes the user.
    conf = (root / "usr/lib/sysusers.d/wgmesh.conf").read_text()
    assert any(line.split()[:2] == ["u", "wgmesh"] for line in conf.splitlines())
    assert "systemd-sysusers" in (root / "DEBIAN/postinst").read_text()
