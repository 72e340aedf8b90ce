"""The prober's echoes, for real, between two network namespaces: a link's
echoes leave from its own address and interface, and only answers that
come back over that interface count."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).parents[2]

SAMPLE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from wgmesh_common import probe
targets = {0: "10.9.0.1", 1: "10.9.0.1", 2: "10.9.0.1"}
sources = {0: ("10.9.0.0", "wgmt0"), 1: ("10.9.0.0", "lo"), 2: ("10.9.0.0", "nosuchdev")}
samples = probe.sample_many(targets, 5, 0.02, 0.5, sources)
print(json.dumps({key: sum(s is not None for s in values) for key, values in samples.items()}))
"""


@pytest.fixture
def two_namespaces():
    names = [f"wgml-pt{os.getpid()}-{side}" for side in ("node", "peer")]
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
        node, peer = names
        batch = (f"link set lo up\nlink add wgmt0 type veth peer name wgmt1 netns {peer}\n"
                 "address add 10.9.0.0/31 dev wgmt0\nlink set wgmt0 up\n")
        subprocess.run(["ip", "-n", node, "-batch", "-"], input=batch, text=True, check=True)
        subprocess.run(["ip", "-n", peer, "-batch", "-"], text=True, check=True,
                       input="link set lo up\naddress add 10.9.0.1/31 dev wgmt1\nlink set wgmt1 up\n")
        yield node
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_only_answers_over_the_links_own_interface_count(two_namespaces):
    result = subprocess.run(["ip", "netns", "exec", two_namespaces, sys.executable, "-c", SAMPLE,
                             str(PROJECT / "lib")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answered = {int(k): v for k, v in json.loads(result.stdout).items()}
    # Over its interface: every echo answered. Bound to another interface
    # (the answers arrive on wgmt0, not lo): none counts. An interface that
    # is not there: no answer, and no failure of the round.
    assert answered == {0: 5, 1: 0, 2: 0}
