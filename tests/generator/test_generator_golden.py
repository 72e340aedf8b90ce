"""Golden-file tests of the systemd generator (as zram-generator's): a
fixture tree in, the expected unit tree out, compared entry by entry."""

import difflib
import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CASES = sorted(p.name for p in (HERE / "cases").iterdir() if p.is_dir())
GENERATOR = HERE.parents[1] / "generators" / "wgmesh-generator"


def run_generator(input_root: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WGMESH_ROOT=str(input_root))
    return subprocess.run([sys.executable, "-I", str(GENERATOR), str(output), *extra],
                          env=env, capture_output=True, text=True, timeout=30)


def tree(root: Path) -> dict[str, str]:
    """Every entry under root: 'link -> target' for symlinks, content for files."""
    entries = {}
    if not root.exists():
        return entries
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            entries[relative] = f"symlink -> {os.readlink(path)}"
        elif path.is_file():
            entries[relative] = path.read_text()
    return entries


def assert_same_tree(actual: Path, expected: Path) -> None:
    got, want = tree(actual), tree(expected)
    if got != want:
        render = lambda t: [f"{k}: {v!r}" for k, v in sorted(t.items())]
        diff = "\n".join(difflib.unified_diff(render(want), render(got), "expected", "generated", lineterm=""))
        pytest.fail(f"generated units differ from the golden tree:\n{diff}")


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, tmp_path: Path) -> None:
    case_dir = HERE / "cases" / case
    result = run_generator(case_dir / "input", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert_same_tree(tmp_path / "out", case_dir / "expected")
    warnings_file = case_dir / "warnings.txt"
    expected_warnings = warnings_file.read_text().splitlines() if warnings_file.exists() else []
    warnings = [line.removeprefix("wgmesh-generator: ") for line in result.stderr.splitlines()]
    assert len(warnings) == len(expected_warnings), result.stderr
    for pattern in expected_warnings:
        assert any(fnmatch.fnmatch(w, pattern) for w in warnings), f"no warning like {pattern!r} in {warnings}"


def test_removed_link_file_is_no_longer_wanted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(HERE / "cases" / "several-links" / "input", root)
    first = tmp_path / "first"
    run_generator(root, first)
    assert (first / "wgmesh.target.wants" / "wgmesh-link@wgm2v6.service").is_symlink()
    (root / "etc/wgmesh/links/wgm2v6.toml").unlink()
    # systemd hands generators an empty directory on every daemon-reload.
    second = tmp_path / "second"
    run_generator(root, second)
    wants = sorted(p.name for p in (second / "wgmesh.target.wants").iterdir())
    assert wants == ["wgmesh-link@wgm2.service", "wgmesh-link@wgm4.service"]


def test_three_directory_form_writes_to_normal_dir(tmp_path: Path) -> None:
    dirs = [tmp_path / d for d in ("normal", "early", "late")]
    result = run_generator(HERE / "cases" / "no-links" / "input", *dirs[:1], str(dirs[1]), str(dirs[2]))
    assert result.returncode == 0
    assert_same_tree(dirs[0], HERE / "cases" / "no-links" / "expected")
    assert not dirs[1].exists() and not dirs[2].exists()


def test_unreadable_tree_never_fails(tmp_path: Path) -> None:
    result = run_generator(tmp_path / "does-not-exist", tmp_path / "out")
    assert result.returncode == 0
    assert tree(tmp_path / "out") == {}


def test_wrong_arguments_are_refused(tmp_path: Path) -> None:
    result = run_generator(tmp_path, tmp_path / "a", str(tmp_path / "b"))
    assert result.returncode != 0
    assert "usage" in result.stderr


def test_the_generator_does_not_import_the_config_editor(tmp_path: Path) -> None:
    # It runs at every boot and daemon-reload: tomlkit (for `wgmesh set`) costs it start-up time for nothing.
    env = dict(os.environ, WGMESH_ROOT=str(HERE / "cases" / "several-links" / "input"))
    result = subprocess.run([sys.executable, "-I", "-X", "importtime", str(GENERATOR), str(tmp_path / "out")],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "wgmesh_common.config" in imported and "tomlkit" not in imported
