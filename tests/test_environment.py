"""The tests run against the dependency versions Debian ships, imported from
Debian's own packages, so what passes here is what the .deb will meet."""

import importlib.metadata
import sys

import pytest

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages/"

# distribution -> (module, accepted version prefixes: bookworm, trixie)
PINS = {
    "pyroute2": ("pyroute2", ("0.7.",)),
    "icmplib": ("icmplib", ("2.1.1",)),
    "click": ("click", ("8.1.",)),
    "tomli_w": ("tomli_w", ("1.0.",)),
    "systemd-python": ("systemd", ("235",)),
}


@pytest.mark.parametrize("distribution", sorted(PINS))
def test_runtime_dependency_is_debians(distribution: str) -> None:
    module_name, versions = PINS[distribution]
    version = importlib.metadata.version(distribution)
    assert version.startswith(versions), f"{distribution} {version} is not Debian's ({versions})"
    module = __import__(module_name)
    assert module.__file__.startswith(DEBIAN_DIST_PACKAGES), f"{module_name} comes from {module.__file__}"


def test_python_is_debians() -> None:
    assert sys.base_prefix == "/usr", "tests must run on Debian's python3, as the .deb does"
    assert sys.version_info[:2] >= (3, 11)
