"""Bad input to the command line, on real nodes: a one-line error naming
the problem, a non-zero exit, and nothing left behind."""

import pytest

from .helpers import one_line


def leftovers(node) -> dict:
    links = node.files_dir / "links"
    reservations = node.state_dir / "reservations"
    return {
        "links": sorted(p.name for p in links.glob("*")) if links.exists() else [],
        "reservations": sorted(p.name for p in reservations.glob("*")) if reservations.exists() else [],
        "wg": [line for line in node.run(["ip", "-o", "link"]).stdout.splitlines() if ": wgm" in line],
    }


def refused(node, argv, *fragments):
    result = node.run(argv, check=False, timeout=60)
    assert result.returncode != 0, f"{argv} succeeded: {result.stdout}"
    assert one_line(result.stderr), f"{argv}: not one line: {result.stderr!r}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{argv}: {result.stderr!r}"
    return result


@pytest.mark.ids((0, 2))
def test_cli_bad_input(netns_lab):
    node0, node2 = netns_lab[0], netns_lab[2]
    # Not initialised yet.
    refused(node2, ["wgmesh", "connect", "http://198.18.0.2:8080", "token"], "not initialised")
    refused(node2, ["wgmesh", "status"], "not initialised")
    refused(node2, ["wgmesh", "token"], "not initialised")
    assert not (node2.files_dir / "wgmesh.toml").exists()
    # Bad IDs write nothing.
    for bad, fragment in (("3", "not a multiple of 2"), ("300", "out of range"), ("-2", "out of range"),
                          ("abc", "is not a valid integer"), ("250", "VXLAN")):
        refused(node2, ["wgmesh", "init", "--", bad] if bad.startswith("-") else ["wgmesh", "init", bad], fragment)
        assert not (node2.files_dir / "wgmesh.toml").exists()

    node0.run(["wgmesh", "init", "0", "--public"])
    node2.run(["wgmesh", "init", "2"])
    refused(node2, ["wgmesh", "init", "4"], "already initialised as node 2")
    token = node0.run(["wgmesh", "token"]).stdout.strip()
    clean = leftovers(node2)
    for url, fragment in (
        ("ftp://198.18.0.2", "must start with http"),
        ("http://", "no host"),
        ("http://198.18.0.2:8080/join", "give only scheme, host and port"),
        ("http://198.18.0.2:99999", "bad URL"),
        ("http://198.18.0.2:9", "cannot reach"),          # nothing listens there
        ("http://198.18.77.2:8080", "cannot reach"),      # no such host in the lab
        ("http://10.0.2.1:8080", "this node itself"),     # its own API
    ):
        refused(node2, ["wgmesh", "connect", url, token], fragment)
        assert leftovers(node2) == clean
    refused(node2, ["wgmesh", "connect", "http://198.18.0.2:8080", "wrong-token"], "token is not valid")
    refused(node2, ["wgmesh", "connect", "--type", "ipsec", "http://198.18.0.2:8080", token], "unknown link type")
    refused(node2, ["wgmesh", "disconnect", "wgm9"], "no link named")
    assert leftovers(node2) == clean and leftovers(node0)["links"] == []
