"""Small helpers shared by the integration tests."""

import base64
import json
import sys
import time
from pathlib import Path

HTTP_CLIENT = str(Path(__file__).with_name("http_client.py"))

def wait_until(predicate, timeout: float, interval: float = 0.2):
    """Poll predicate until it is truthy; its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def start_bird(node, text: str) -> None:
    """bird with config text in node, its control socket at /run/bird.ctl."""
    config = node.host_path("/run/bird.conf")
    config.write_text(text)
    node.run(["bird", "-p", "-c", "/run/bird.conf"])
    node.popen(["bird", "-f", "-c", "/run/bird.conf", "-s", "/run/bird.ctl"],
               stdout=open(node.host_path("/run/bird.log"), "w"), stderr=open(node.host_path("/run/bird.err"), "w"))  # noqa: SIM115 - bird's


def pings(node, address: str) -> bool:
    return node.run(["ping", "-c1", "-W1", address], check=False).returncode == 0


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


def report(message: str) -> None:
    """Figures the issues ask the tests to print, visible without -s."""
    sys.__stdout__.write(f"\n[wgmesh] {message}\n")
    sys.__stdout__.flush()


def interfaces(node) -> set[str]:
    """The names of the node's network interfaces."""
    out = node.run(["ip", "-o", "link", "show"]).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def send_requests(node, host: str, specs: list[dict]) -> list[dict]:
    """HTTP requests to a join-server at host, sent from inside node (see
    http_client.py); their answers, in order."""
    for spec in specs:
        spec.setdefault("host", host)
    result = node.run([sys.executable, HTTP_CLIENT], input=json.dumps(specs), timeout=120)
    return json.loads(result.stdout)


# A well-formed WireGuard public key nobody holds the private half of.
SOME_PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()


def init_two_nodes(lab):
    """Node 0 (API on every address) and node 2, initialised; node 0's token."""
    node0, node2 = lab[0], lab[2]
    node0.run(["wgmesh", "init", "0", "--public"])
    node2.run(["wgmesh", "init", "2"])
    return node0, node2, node0.run(["wgmesh", "token"]).stdout.strip()
