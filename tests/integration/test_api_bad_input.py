"""Bad input to the join API, from another node over the real network:
every request gets a 4xx with a one-line reason, and no file, interface,
process or reservation is left behind."""

import base64
import json
import time
import tomllib
from pathlib import Path

import pytest

from .helpers import SOME_PUBLIC_KEY, pings, send_requests, wait_until

NODE0 = "198.18.0.2"
def send(node, specs: list[dict]) -> list[dict]:
    return send_requests(node, NODE0, specs)


def signing_key_hex(node, name: str) -> str:
    """The key node signs its requests about link name with (derived from its link files)."""
    from wgmesh_common import linkfile, linkkeys

    link = linkfile.parse(tomllib.loads((node.files_dir / "links" / f"{name}.toml").read_text()), name)
    private = (node.files_dir / "links" / f"{name}.key").read_text().strip()
    return linkkeys.signing_key(private, link.peer_public_key).hex()


def snapshot(node) -> dict:
    """Everything a request could leave behind on node 0."""
    links = sorted(p.name for p in (node.files_dir / "links").glob("*")) if (node.files_dir / "links").exists() else []
    reservations = node.state_dir / "reservations"
    return {
        "links": links,
        "reservations": sorted(p.name for p in reservations.glob("*")) if reservations.exists() else [],
        "interfaces": node.run("ip -o link show | cut -d: -f2", check=False).stdout.split(),
        "processes": sorted(open(f"/proc/{pid}/comm").read().strip() for pid in node.pids()
                            if Path(f"/proc/{pid}/comm").exists()),
        "tokens": (node.files_dir / "tokens.toml").read_text(),
    }


def signed(path: str, fields: dict, psk: str, method: str = "POST", timestamp: float | None = None) -> dict:
    """psk: the link's signing key in hex."""
    body = dict(fields, protocol=2, timestamp=round(time.time() if timestamp is None else timestamp, 6))
    return {"method": method, "path": path, "raw": base64.b64encode(json.dumps(body).encode()).decode(),
            "sign_with": psk}


@pytest.mark.ids((0, 2))
def test_bad_requests_are_refused_and_leave_nothing(netns_lab):
    node0, node2 = netns_lab[0], netns_lab[2]
    # Node 2 also plays a reverse proxy in front of node 0: every refusal
    # from outside counts against its client, so each bad request below
    # names a client of its own (X-Forwarded-For) and is judged on its own.
    node0.run(["wgmesh", "init", "0", "--public", "--no-start"])
    node0.run(["wgmesh", "set", "api.trusted_proxies", "198.18.2.2"])
    node0.run(["wgmesh", "up"])
    node2.run(["wgmesh", "init", "2"])
    token = node0.run(["wgmesh", "token"]).stdout.strip()
    node2.run(["wgmesh", "connect", "--transport", "4", f"http://{NODE0}:8080", token])
    assert wait_until(lambda: pings(node2, "10.0.0.1"), 20)
    psk = signing_key_hex(node2, "wgm0")
    before = snapshot(node0)

    connect = {"id": 4, "token": token, "public_key": SOME_PUBLIC_KEY, "listen_port": 51820, "family": 4}
    cases = [
        ("no token", {"method": "POST", "path": "/connectivity", "body": {"id": 4}}, 401),
        ("wrong token", {"method": "POST", "path": "/connectivity", "body": {"id": 4, "token": "x" * 32}}, 403),
        ("malformed JSON", {"method": "POST", "path": "/connect", "raw": base64.b64encode(b'{"id": 4,').decode()}, 400),
        ("not an object", {"method": "POST", "path": "/connect", "body": [1, 2]}, 400),
        ("id as a string", {"method": "POST", "path": "/connect", "body": dict(connect, id="4")}, 400),
        ("port as a string", {"method": "POST", "path": "/connect", "body": dict(connect, listen_port="51820")}, 400),
        ("oversized body", {"method": "POST", "path": "/connect",
                            "raw": base64.b64encode(b" " * 20000 + b"{}").decode()}, 413),
        ("out-of-range id", {"method": "POST", "path": "/connect", "body": dict(connect, id=300)}, 400),
        ("odd id", {"method": "POST", "path": "/connect", "body": dict(connect, id=5)}, 400),
        ("the server's own id", {"method": "POST", "path": "/connect", "body": dict(connect, id=0)}, 409),
        ("unknown link type", {"method": "POST", "path": "/connect", "body": dict(connect, type="amneziawg")}, 400),
        ("bad public key", {"method": "POST", "path": "/connect", "body": dict(connect, public_key="abc")}, 400),
        ("unknown field", {"method": "POST", "path": "/connect", "body": dict(connect, admin=True)}, 400),
        ("link exists", {"method": "POST", "path": "/connect", "body": dict(connect, id=2)}, 409),
        # No link and a wrong key are answered alike: the link table cannot be read off.
        ("disconnect of a link not owned", signed("/disconnect", {"id": 2, "family": 4}, "00" * 32), 404),
        ("disconnect unsigned", {"method": "POST", "path": "/disconnect", "body": {"id": 2, "family": 4,
                                                                                   "timestamp": time.time()}}, 401),
        ("disconnect of no link", signed("/disconnect", {"id": 6, "family": 4}, psk), 404),
        ("stale signature", signed("/disconnect", {"id": 2, "family": 4}, psk, timestamp=time.time() - 3600), 403),
        ("wrong method", {"method": "GET", "path": "/connect"}, 405),
        ("unknown path", {"method": "POST", "path": "/admin", "body": {}}, 404),
        ("5000-digit id", {"method": "POST", "path": "/connectivity",
                           "raw": base64.b64encode(b'{"id": ' + b"9" * 5000 + b"}").decode()}, 400),
        ("NaN timestamp", dict(signed("/update", {"id": 2, "family": 4}, psk, method="PATCH"),
                               raw=base64.b64encode(b'{"id": 2, "family": 4, "timestamp": NaN}').decode()), 400),
        ("negative Content-Length", {"method": "POST", "path": "/connect", "headers": {"Content-Length": "-1"}}, 400),
    ]
    for number, (_, spec, _) in enumerate(cases):
        spec.setdefault("headers", {})["X-Forwarded-For"] = f"203.0.113.{number + 1}"
    answers = send(node2, [spec for _, spec, _ in cases])
    for (name, _, status), answer in zip(cases, answers):
        assert answer["status"] == status, f"{name}: {answer}"
        reason = json.loads(answer["body"])["error"]
        assert reason and "\n" not in reason, f"{name}: {reason!r}"
    assert snapshot(node0) == before

    # A replayed signed request is refused, even with a valid signature.
    update = signed("/update", {"id": 2, "family": 4}, psk, method="PATCH")
    first, replay = send(node2, [update, dict(update)])
    assert first["status"] == 200, first
    assert replay["status"] == 403 and "replay" in json.loads(replay["body"])["error"]
    assert snapshot(node0) == before

    # Too many failed token attempts from one address: 429 until it cools down.
    guesser = {"X-Forwarded-For": "198.51.100.66"}
    attempts = send(node2, [{"method": "POST", "path": "/connectivity", "body": {"id": 4, "token": "bad"},
                             "headers": guesser} for _ in range(6)])
    assert [a["status"] for a in attempts][-1] == 429
    good_but_limited = send(node2, [{"method": "POST", "path": "/connectivity", "body": {"id": 4, "token": token},
                                     "headers": guesser}])
    assert good_but_limited[0]["status"] == 429
    # Another client of the same proxy is not locked out.
    other_client = send(node2, [{"method": "POST", "path": "/connectivity", "body": {"id": 4, "token": token},
                                 "headers": {"X-Forwarded-For": "198.51.100.67"}}])
    assert other_client[0]["status"] == 200, other_client
    assert snapshot(node0) == before

    # The real owner's disconnect works once; its replay finds nothing.
    disconnect = signed("/disconnect", {"id": 2, "family": 4}, psk)
    done = send(node2, [disconnect])[0]
    assert done["status"] == 200, done
    assert wait_until(lambda: not (node0.files_dir / "links" / "wgm2.toml").exists(), 10)
    again = send(node2, [dict(disconnect)])[0]
    assert again["status"] in (403, 404), again
