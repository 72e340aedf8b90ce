"""The containers' Debian root file system, built once with debootstrap and
cached; containers run on overlays of it and never write to it.

Everything the wgmesh .deb depends on is preinstalled, so that inside a
container `apt install /lab/wgmesh_*.deb` needs no network.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

from . import aptsources
from .host import log, remove_tree, run, unmount_all_under

# The releases the package ships for; WGMESH_LAB_SUITE picks the lab's.
SUITES = ("bookworm", "trixie")
SUITE = os.environ.get("WGMESH_LAB_SUITE", "bookworm")
if SUITE not in SUITES:
    raise SystemExit(f"WGMESH_LAB_SUITE={SUITE!r}: the lab builds {' or '.join(SUITES)}")
VARIANT = "minbase"

# Extend this list (it is part of the cache key, so the next use rebuilds).
# debootstrap resolves Depends but not virtual packages: python3-cffi-backend
# must be named for anything that pulls in python3-cryptography.
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "iputils-ping",
    "procps",
    "nftables",
    "less",
    "python3",
    "python3-pyroute2",
    "python3-icmplib",
    "python3-tomli-w",
    "python3-tomlkit",
    "python3-systemd",
    "python3-click",
    "python3-cffi-backend",
    "python3-cryptography",
    "bird2",
    "wireguard-tools",
    "wireguard-go",
    # The metrics test scrapes the real exporter (tests/system/test_metrics_exporter.py).
    "prometheus-node-exporter",
    # wgmesh's Recommends: wgmesh-notifier sends through it.
    "apprise",
]

# Units that only slow a lab boot or reach for the network. bird.service is
# deliberately absent: wgmesh must coexist with Debian's stock bird.
MASKED_UNITS = [
    "systemd-networkd-wait-online.service",
    "console-getty.service",
    "getty@tty1.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
]

# Bump when _configure() changes what it writes, so caches get rebuilt.
RECIPE_VERSION = 1

MARKER = "etc/wgmesh-lab-rootfs.json"


def mirror() -> str:
    """WGMESH_LAB_MIRROR, else the Debian mirror of this machine's own apt sources."""
    given = os.environ.get("WGMESH_LAB_MIRROR")
    if given:
        return given
    found = aptsources.debian_mirror(SUITE, aptsources.machine_sources(), SUITES)
    if found is None:
        raise RuntimeError(f"no Debian mirror for {SUITE} in this machine's apt sources (/etc/apt/sources.list, "
                           "/etc/apt/sources.list.d/): add one, or set WGMESH_LAB_MIRROR")
    return found


def cache_dir() -> Path:
    return Path(os.environ.get("WGMESH_LAB_CACHE", "/var/cache/wgmesh-lab"))


def cache_key(packages: list[str] | None = None) -> str:
    packages = PACKAGES if packages is None else packages
    recipe = json.dumps(
        {
            "suite": SUITE,
            "variant": VARIANT,
            "packages": sorted(set(packages)),
            "masked": sorted(MASKED_UNITS),
            "recipe": RECIPE_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def rootfs_path(packages: list[str] | None = None) -> Path:
    return cache_dir() / f"{SUITE}-{cache_key(packages)}"


def is_built(path: Path) -> bool:
    # The marker is written last, inside the temp dir, before the rename.
    return (path / MARKER).is_file()


def ensure_rootfs(packages: list[str] | None = None, rebuild: bool = False) -> Path:
    """The cached rootfs for `packages`, built first if missing (or if asked)."""
    packages = list(PACKAGES if packages is None else packages)
    target = rootfs_path(packages)
    if is_built(target) and not rebuild:
        return target
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        if not _try_lock(lock):
            log(f"waiting for another rootfs build (lock {cache / '.lock'})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(target) and not rebuild:
            return target
        _remove_abandoned_builds(cache)
        _build(target, packages, lock.fileno())
    return target


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _remove_abandoned_builds(cache: Path) -> None:
    # Only ever called under the lock, so any .build-* dir is a dead build's.
    for entry in cache.iterdir():
        if entry.name.startswith(".build-") or (entry.name.startswith(".old-") and not _in_use_as_lowerdir(entry)):
            log(f"removing abandoned build {entry}")
            remove_tree(entry)


def _build(target: Path, packages: list[str], lock_fd: int) -> None:
    cache = target.parent
    building = cache / f".build-{target.name}-{os.getpid()}"
    debs = cache / ("debs" if SUITE == "bookworm" else f"debs-{SUITE}")
    debs.mkdir(exist_ok=True)
    build_log = cache / f"build-{target.name}.log"
    started = time.monotonic()
    log(f"building {SUITE} rootfs {target} ({len(packages)} packages; takes a minute or two)")
    try:
        argv = [
            "debootstrap",
            f"--variant={VARIANT}",
            f"--include={','.join(packages)}",
            f"--cache-dir={debs}",
            SUITE,
            str(building),
            mirror(),
        ]
        _run_with_progress(argv, build_log, lock_fd)
        _configure(building, packages)
        _verify(building, packages)
        (building / MARKER).write_text(
            json.dumps({"key": target.name, "packages": sorted(packages), "built": time.time()}, indent=1)
        )
        if target.exists():
            # Containers of the old build may still run on it as a lowerdir.
            retired = cache / f".old-{target.name}-{os.getpid()}"
            os.rename(target, retired)
            os.rename(building, target)
            if not _in_use_as_lowerdir(retired):
                remove_tree(retired)
        else:
            os.rename(building, target)
    finally:
        if building.exists():
            # debootstrap mounts /proc, /sys, ... inside; remove_tree unmounts first.
            unmount_all_under(building)
            remove_tree(building)
    log(f"rootfs ready in {time.monotonic() - started:.0f} s: {target}")


def _run_with_progress(argv: list[str], build_log: Path, lock_fd: int) -> None:
    with open(build_log, "w") as log_file:
        # debootstrap (and its dpkg) inherit the lock: if we are killed
        # outright, no other build may delete the dir it still writes into.
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            pass_fds=(lock_fd,),
        )
        try:
            last_phase, lines_in_phase = "", 0
            for line in process.stdout:
                log_file.write(line)
                words = line.split()
                # debootstrap prints lines per package: show each phase's
                # start and a heartbeat, and every warning or error.
                if words[:1] == ["I:"] and len(words) > 1:
                    if words[1] == "Validating":
                        continue
                    lines_in_phase += 1
                    if words[1] == last_phase and lines_in_phase % 50:
                        continue
                    if words[1] != last_phase:
                        last_phase, lines_in_phase = words[1], 0
                log(f"debootstrap: {line.rstrip()}")
            returncode = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
    if returncode != 0:
        tail = build_log.read_text().splitlines()[-25:]
        raise RuntimeError(f"debootstrap failed ({returncode}); log {build_log}:\n" + "\n".join(tail))


def _configure(root: Path, packages: list[str]) -> None:
    # Password-less root: `machinectl login` / console login for debugging.
    run(["chroot", str(root), "passwd", "--delete", "root"])
    # Empty machine-id: each boot takes the one nspawn passes (--uuid), so
    # containers are distinct and keep their identity across reboots.
    (root / "etc/machine-id").write_text("")
    dbus_machine_id = root / "var/lib/dbus/machine-id"
    if dbus_machine_id.is_file() and not dbus_machine_id.is_symlink():
        dbus_machine_id.unlink()
    # Written per container into its overlay; debootstrap copied the host's.
    (root / "etc/hostname").unlink(missing_ok=True)
    for unit in MASKED_UNITS:
        mask = root / "etc/systemd/system" / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")
    # A persistent journal survives poweroff, so `journalctl -b -1` works.
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
    conf = root / "etc/systemd/system.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "wgmesh-lab.conf").write_text(
        "# A stuck stop must not hold a lab poweroff for the default 90 s.\n"
        "[Manager]\nDefaultTimeoutStopSec=15s\n"
    )
    run(["chroot", str(root), "apt-get", "clean"])


def _verify(root: Path, packages: list[str]) -> None:
    result = run(
        ["chroot", str(root), "dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages], check=False
    )
    installed = {line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed")}
    missing = sorted(set(packages) - installed)
    if missing:
        raise RuntimeError(f"rootfs lacks packages after debootstrap: {missing}\n{result.stderr}")


def _overlay_lowerdirs() -> list[str]:
    lowers = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        _, _, after = line.partition(" - ")
        fields = after.split()
        if fields and fields[0] == "overlay":
            for option in fields[2].split(","):
                if option.startswith("lowerdir="):
                    lowers.extend(option[len("lowerdir=") :].split(":"))
    return lowers


def _in_use_as_lowerdir(path: Path) -> bool:
    resolved = os.path.realpath(path)
    return any(os.path.realpath(lower) == resolved for lower in _overlay_lowerdirs())


def cached_rootfs() -> list[Path]:
    cache = cache_dir()
    if not cache.is_dir():
        return []
    return sorted(entry for entry in cache.iterdir() if entry.name.startswith(f"{SUITE}-") and is_built(entry))


def prune(keep: Path | None = None) -> list[Path]:
    """Remove cached roots other than `keep` that no overlay uses."""
    keep = rootfs_path() if keep is None else keep
    removed = []
    for entry in cached_rootfs():
        if entry != keep and not _in_use_as_lowerdir(entry):
            log(f"pruning {entry}")
            remove_tree(entry)
            removed.append(entry)
    return removed

