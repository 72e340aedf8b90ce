"""A hostile neighbour on the underlay cannot use a node as its way into
the mesh, while the mesh and the public join API keep working.

The lab's WAN namespace plays the neighbour: it routes the mesh's ranges to
node 0's underlay address and tries node 0's join API on its mesh address,
node 2's join API (which listens on its mesh address only) and node 4's
loopback through node 0, and sends VXLAN to node 0. With node 0's
firewall table deleted the same attacks get through (checked in the same
run, so the test proves its probes can see a hole)."""

import struct
import subprocess
import sys

import pytest

from .helpers import init_two_nodes, pings, report, wait_until

VICTIM_URL = "http://198.18.0.2:8080"
VXLAN_PORT = 4789
PROBE_PORT = 49999

TCP_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError as error:
    print(f"no connection: {error}")
    sys.exit(1)
print("connected")
"""

VXLAN_SEND = """
import socket, sys
frame = bytes.fromhex(sys.argv[3])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    for _ in range(5):
        sock.sendto(frame, (sys.argv[1], int(sys.argv[2])))
"""

UDP_LISTEN = """
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind(("0.0.0.0", int(sys.argv[1])))
    sock.settimeout(float(sys.argv[2]))
    print("ready", flush=True)
    try:
        print(sock.recv(100).decode(), flush=True)
    except socket.timeout:
        print("nothing", flush=True)
"""


def checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def vxlan_frame(vni: int, inner_mac: str, inner_destination: str, payload: bytes) -> bytes:
    """A VXLAN packet's UDP payload: the header, then an Ethernet frame with
    an IPv4 UDP datagram to inner_destination:PROBE_PORT."""
    import ipaddress

    udp = struct.pack("!HHHH", 40000, PROBE_PORT, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         ipaddress.IPv4Address("10.0.251.99").packed, ipaddress.IPv4Address(inner_destination).packed)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    ethernet = bytes.fromhex(inner_mac.replace(":", "")) + bytes.fromhex("020000000063") + b"\x08\x00"
    return struct.pack("!II", 0x08000000, vni << 8) + ethernet + header + udp


def neighbour_connects(lab, host: str, port: int, timeout: float = 2) -> bool:
    result = lab.underlay.run([sys.executable, "-c", TCP_PROBE, host, str(port), str(timeout)], check=False)
    return result.returncode == 0


def neighbour_pings(lab, address: str) -> bool:
    return lab.underlay.run(["ping", "-c1", "-W1", address], check=False).returncode == 0


def vxlan_gets_through(lab, victim, outer_destination: str) -> bool:
    """Whether a VXLAN packet the neighbour sends to outer_destination is
    decapsulated by the victim and its inner datagram delivered."""
    listener = victim.popen([sys.executable, "-c", UDP_LISTEN, str(PROBE_PORT), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        mac = victim.run(["cat", "/sys/class/net/wgmvx4/address"]).stdout.strip()
        frame = vxlan_frame(251, mac, "10.0.0.1", b"through")
        lab.underlay.run([sys.executable, "-c", VXLAN_SEND, outer_destination, str(VXLAN_PORT), frame.hex()])
        answer = listener.stdout.readline().strip()
    finally:
        listener.wait(timeout=10)
    return answer == "through"


def holes(lab, victim) -> dict[str, bool]:
    """Each attack of the neighbour: did it get through?"""
    return {
        "join API on node 0's mesh address": neighbour_connects(lab, "10.0.0.1", 8080),
        "node 2's join API (mesh address only) through node 0": neighbour_connects(lab, "10.0.2.1", 8080),
        "node 4's loopback through node 0": neighbour_pings(lab, "10.0.4.1"),
        "node 4's IPv6 loopback through node 0": neighbour_pings(lab, "fd10:0:0:4::1"),
        "VXLAN to node 0's underlay address": vxlan_gets_through(lab, victim, "198.18.0.2"),
        "VXLAN to node 0's mesh address": vxlan_gets_through(lab, victim, "10.0.0.1"),
    }


def tables(node) -> list[str]:
    return [line for line in node.run(["nft", "list", "tables"]).stdout.splitlines() if "wgmesh" in line]


@pytest.mark.ids((0, 2, 4))
def test_a_hostile_neighbour_on_the_underlay_cannot_enter_the_mesh(netns_lab):
    node0, node2, token = init_two_nodes(netns_lab)
    node4 = netns_lab[4]
    node4.run(["wgmesh", "init", "4"])
    # Joins with a token over the underlay, to node 0's public join API.
    node2.run(["wgmesh", "connect", VICTIM_URL, token])
    node4.run(["wgmesh", "connect", VICTIM_URL, token])
    # The mesh works, node 0 forwarding between its links.
    assert wait_until(lambda: pings(node4, "10.0.2.1") and pings(node2, "10.0.4.1"), 30)
    assert wait_until(lambda: pings(node4, "fd10:0:0:2::1"), 20)
    # So does the overlay: VXLAN between node loopbacks, across node 0.
    assert wait_until(lambda: pings(node4, "10.0.251.2"), 20)
    assert "wgmvx4" in node0.run(["ip", "-o", "link", "show", "wgmvx4"]).stdout

    # The neighbour routes the mesh's ranges to node 0.
    netns_lab.underlay.run(["ip", "route", "add", "10.0.0.0/16", "via", "198.18.0.2"])
    netns_lab.underlay.run(["ip", "-6", "route", "add", "fd10::/48", "via", "2001:db8:0::2"])
    # What it may reach: node 0's public join API at its underlay address.
    assert neighbour_connects(netns_lab, "198.18.0.2", 8080)

    guarded = holes(netns_lab, node0)
    report(f"through node 0's firewall: {guarded}")
    assert not any(guarded.values()), guarded
    assert tables(node0) == ["table inet wgmesh"]

    # With node 0's table deleted, nodes 2 and 4 still refuse what node 0 forwards from the
    # underlay over their links (it does not come from the mesh's addresses) ...
    node0.run(["nft", "delete", "table", "inet", "wgmesh"])
    behind = holes(netns_lab, node0)
    report(f"without node 0's firewall: {behind}")
    assert behind["join API on node 0's mesh address"], behind
    assert not any(value for name, value in behind.items() if "through node 0" in name), behind
    # ... and with every node's table deleted, each attack gets through.
    for node in (node2, node4):
        node.run(["nft", "delete", "table", "inet", "wgmesh"])
    open_mesh = holes(netns_lab, node0)
    report(f"without any firewall: {open_mesh}")
    assert all(open_mesh.values()), open_mesh

    # Loading them again (as the node unit's start does) closes them again,
    # and twice leaves one table.
    for node in (node0, node2, node4):
        node.run(["wgmesh-link", "loopback", "up"])
    node0.run(["wgmesh-link", "loopback", "up"])
    assert tables(node0) == ["table inet wgmesh"]
    assert not any(holes(netns_lab, node0).values())
    # The mesh still works: a new join with the token over the underlay,
    # and traffic across node 0.
    node4.run(["wgmesh", "disconnect", "--yes"])
    node4.run(["wgmesh", "connect", "--transport", "4", VICTIM_URL, token])
    assert wait_until(lambda: pings(node4, "10.0.2.1"), 30)

    # Taking the node down removes the table.
    node0.run(["wgmesh", "down"])
    assert tables(node0) == []
