"""Building the package under test with debian/build-deb: shared by the
system tests, the benchmarks and the demo."""

import os
import subprocess
from pathlib import Path

PROJECT = Path(__file__).parents[2]
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(RuntimeError):
    pass


def build_deb(out: Path, suffix: str | None = None) -> Path:
    """Build the .deb into out (version + suffix if given); its path."""
    argv = [str(PROJECT / "debian/build-deb"), "--output-dir", str(out)]
    if suffix:
        argv += ["--version-suffix", suffix]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800,
                            env=dict(os.environ, PATH=DEBIAN_PATH, LC_ALL="C.UTF-8"))
    if result.returncode != 0:
        raise BuildError(f"building the .deb failed:\n{result.stderr[-4000:]}")
    path = Path(result.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise BuildError(f"build-deb named no package file:\n{result.stdout}")
    return path
