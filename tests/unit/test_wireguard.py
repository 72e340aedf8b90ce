"""WireGuard configuration: the UAPI text for wireguard-go, and the generic
netlink message the kernel module gets (built by pyroute2's own code,
captured at the socket)."""

import base64
import ipaddress
import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path

import pytest
from pyroute2.netlink import NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.generic.wireguard import (
    WG_CMD_SET_DEVICE,
    WG_GENL_VERSION,
    WGDEVICE_A_IFNAME,
    WGDEVICE_A_LISTEN_PORT,
    WGDEVICE_A_PEERS,
    WireGuard,
    wgmsg,
)

from unit_helpers import random_key
from wgmesh_common import keys, wireguard
from wgmesh_common.errors import WgmeshError
from wgmesh_common.wireguard import DeviceSettings, kernel_set_arguments, parse_kernel_info, parse_uapi_get


def hexkey(key: str) -> str:
    return base64.b64decode(key).hex()


@pytest.fixture
def client_settings(wgkeys) -> DeviceSettings:
    (private, _), (_, peer_public), _ = wgkeys
    return DeviceSettings(private, 51821, peer_public, random_key(), endpoint="192.0.2.1:51820", keepalive=25)


@pytest.fixture
def server_settings(wgkeys) -> DeviceSettings:
    (private, _), (_, peer_public), _ = wgkeys
    return DeviceSettings(private, 51820, peer_public, random_key())


def test_key_hex_round_trip(wgkeys):
    for private, public in wgkeys:
        assert keys.from_hex(keys.to_hex(private)) == private
        assert len(keys.to_hex(public)) == 64 and keys.to_hex(public) == hexkey(public)


def test_uapi_set_request_for_a_client(client_settings):
    s = client_settings
    assert wireguard.uapi_set_request(s) == (
        "set=1\n"
        f"private_key={hexkey(s.private_key)}\n"
        "listen_port=51821\n"
        "replace_peers=true\n"
        f"public_key={hexkey(s.peer_public_key)}\n"
        f"preshared_key={hexkey(s.preshared_key)}\n"
        "endpoint=192.0.2.1:51820\n"
        "persistent_keepalive_interval=25\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=0.0.0.0/0\n"
        "allowed_ip=::/0\n"
        "\n"
    )


def test_uapi_set_request_for_a_server(server_settings):
    s = server_settings
    assert wireguard.uapi_set_request(s) == (
        "set=1\n"
        f"private_key={hexkey(s.private_key)}\n"
        "listen_port=51820\n"
        "replace_peers=true\n"
        f"public_key={hexkey(s.peer_public_key)}\n"
        f"preshared_key={hexkey(s.preshared_key)}\n"
        "persistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=0.0.0.0/0\n"
        "allowed_ip=::/0\n"
        "\n"
    )


def test_uapi_set_request_with_a_v6_endpoint(wgkeys):
    s = DeviceSettings(wgkeys[0][0], 1, wgkeys[1][1], random_key(), endpoint="[2001:db8::1]:51820", keepalive=5)
    assert "\nendpoint=[2001:db8::1]:51820\n" in wireguard.uapi_set_request(s)


def uapi_get_reply(private: str, peer_public: str) -> str:
    return (
        f"private_key={hexkey(private)}\n"
        "listen_port=51820\n"
        f"public_key={hexkey(peer_public)}\n"
        f"preshared_key={hexkey(random_key())}\n"
        "protocol_version=1\n"
        "endpoint=192.0.2.1:51821\n"
        "last_handshake_time_sec=1700000000\n"
        "last_handshake_time_nsec=500000000\n"
        "tx_bytes=1234\n"
        "rx_bytes=5678\n"
        "persistent_keepalive_interval=25\n"
        "allowed_ip=0.0.0.0/0\n"
        "allowed_ip=::/0\n"
        "errno=0\n"
        "\n"
    )


def test_parse_uapi_get(wgkeys):
    (private, public), (_, peer_public), _ = wgkeys
    status = parse_uapi_get(uapi_get_reply(private, peer_public))
    assert status.listen_port == 51820
    # Only the public half comes out, computed by wg from the private key.
    assert status.public_key == public
    [peer] = status.peers
    assert peer.public_key == peer_public
    assert peer.endpoint == "192.0.2.1:51821"
    assert peer.last_handshake == pytest.approx(1700000000.5)
    assert (peer.rx_bytes, peer.tx_bytes) == (5678, 1234)


def test_parse_uapi_get_of_a_device_without_peers():
    status = parse_uapi_get("listen_port=0\nerrno=0\n\n")
    assert status.listen_port == 0 and status.peers == [] and status.public_key is None


def test_parse_uapi_get_reports_an_error():
    with pytest.raises(WgmeshError, match="errno -22"):
        parse_uapi_get("errno=-22\n\n")


# ------------------------------------------------------ userspace, UAPI socket

class FakeUapi:
    """wireguard-go's UAPI socket: records each request, answers errno."""

    def __init__(self, ifname: str, answer: bytes):
        self.directory = Path(tempfile.mkdtemp(prefix="wgu"))
        self.requests: list[bytes] = []
        self.answer = answer
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.directory / f"{ifname}.sock"))
        self.server.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                conn.sendall(self.answer)

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def test_userspace_configure_sends_the_set_request(client_settings):
    fake = FakeUapi("wgm2", b"errno=0\n\n")
    try:
        wireguard.UserspaceBackend(socket_dir=fake.directory).configure("wgm2", client_settings)
        assert fake.requests == [wireguard.uapi_set_request(client_settings).encode()]
    finally:
        fake.close()


def test_userspace_configure_refused_is_an_error(client_settings):
    fake = FakeUapi("wgm2", b"errno=-22\n\n")
    try:
        with pytest.raises(WgmeshError, match=r"wgm2: wireguard-go refused the configuration \(errno=-22\)"):
            wireguard.UserspaceBackend(socket_dir=fake.directory).configure("wgm2", client_settings)
    finally:
        fake.close()


def test_userspace_without_wireguard_go_is_a_one_line_error(tmp_path, client_settings):
    with pytest.raises(WgmeshError, match="wgm9: no wireguard-go is listening"):
        wireguard.UserspaceBackend(socket_dir=tmp_path).configure("wgm9", client_settings)


# -------------------------------------------------------- kernel, netlink

def test_kernel_set_arguments_for_a_client(client_settings):
    s = client_settings
    assert kernel_set_arguments("wgm2", s) == {
        "interface": "wgm2",
        "private_key": s.private_key,
        "listen_port": 51821,
        "peer": {
            "public_key": s.peer_public_key,
            "preshared_key": s.preshared_key,
            "persistent_keepalive": 25,
            "allowed_ips": ["0.0.0.0/0", "::/0"],
            "endpoint_addr": "192.0.2.1",
            "endpoint_port": 51820,
        },
    }


def test_kernel_set_arguments_for_a_server_have_no_endpoint(server_settings):
    peer = kernel_set_arguments("wgm2", server_settings)["peer"]
    assert "endpoint_addr" not in peer and "endpoint_port" not in peer
    assert peer["persistent_keepalive"] == 0


class CapturingWireGuard(WireGuard):
    """pyroute2's WireGuard with the socket cut off: set() builds and encodes
    its message exactly as for the kernel; sendto() keeps the bytes."""

    FAMILY_ID = 0x1D

    def __init__(self):  # no netlink socket, no family lookup
        self._prid = self.FAMILY_ID
        self.pid = 4242
        self.sent: list[bytes] = []

    def sendto(self, data, address):
        self.sent.append(bytes(data))

    def get(self):
        ack = wgmsg()
        ack["header"]["error"] = None
        return [ack]


def kernel_message(ifname: str, settings: DeviceSettings) -> tuple[bytes, wgmsg]:
    wg = CapturingWireGuard()
    wg.set(**kernel_set_arguments(ifname, settings))
    [raw] = wg.sent
    message = wgmsg(raw)
    message.decode()
    return raw, message


def raw_attributes(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, flags, payload) of each netlink attribute in data, read by hand."""
    result, offset = [], 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("HH", data, offset)
        result.append((kind & ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER), kind & (NLA_F_NESTED | NLA_F_NET_BYTEORDER),
                       data[offset + 4:offset + length]))
        offset += (length + 3) & ~3
    return result


GENL_HEADERS = 16 + 4  # nlmsghdr + genlmsghdr
# From the kernel's include/uapi/linux/wireguard.h (pyroute2 names no such constants).
WGPEER_A_ENDPOINT = 4
KERNEL_WGPEER_F_REPLACE_ALLOWEDIPS = 1 << 1  # REMOVE_ME is 1 << 0, UPDATE_ONLY 1 << 2


@pytest.mark.parametrize("endpoint, family, addr, port", [
    ("192.0.2.1:51820", 2, "192.0.2.1", 51820),
    ("[2001:db8::1]:51999", 10, "2001:db8::1", 51999),
])
def test_the_kernel_gets_a_complete_set_device_message(wgkeys, endpoint, family, addr, port):
    (private, _), (_, peer_public), _ = wgkeys
    psk = random_key()
    settings = DeviceSettings(private, 51821, peer_public, psk, endpoint=endpoint, keepalive=25)
    raw, message = kernel_message("wgm2", settings)

    assert message["header"]["type"] == CapturingWireGuard.FAMILY_ID
    assert message["header"]["flags"] == NLM_F_REQUEST | NLM_F_ACK
    assert message["header"]["length"] == len(raw)
    assert message["cmd"] == WG_CMD_SET_DEVICE and message["version"] == WG_GENL_VERSION
    assert message.get_attr("WGDEVICE_A_IFNAME") == "wgm2"
    assert base64.b64decode(message.get_attr("WGDEVICE_A_PRIVATE_KEY")) == base64.b64decode(private)
    assert message.get_attr("WGDEVICE_A_LISTEN_PORT") == 51821
    # The private key travels as the 32 raw bytes, not as base64 text.
    assert base64.b64decode(private) in raw and private.encode() not in raw

    [peer] = message.get_attr("WGDEVICE_A_PEERS")
    assert base64.b64decode(peer.get_attr("WGPEER_A_PUBLIC_KEY")) == base64.b64decode(peer_public)
    assert base64.b64decode(peer.get_attr("WGPEER_A_PRESHARED_KEY")) == base64.b64decode(psk)
    assert peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") == 25
    endpoint_attr = peer.get_attr("WGPEER_A_ENDPOINT")
    assert (endpoint_attr["family"], endpoint_attr["addr"], endpoint_attr["port"]) == (family, addr, port)
    allowed = peer.get_attr("WGPEER_A_ALLOWEDIPS")
    assert sorted(a["addr"] for a in allowed) == ["0.0.0.0/0", "::/0"]
    assert sorted(a.get_attr("WGALLOWEDIP_A_FAMILY") for a in allowed) == [2, 10]
    # Read the bytes by hand, as the kernel would: the nested attributes carry
    # NLA_F_NESTED, which its policy requires, and the endpoint is a sockaddr.
    device = {kind: (flags, payload) for kind, flags, payload in raw_attributes(raw[GENL_HEADERS:])}
    assert device[WGDEVICE_A_IFNAME][1] == b"wgm2\0"
    assert struct.unpack("H", device[WGDEVICE_A_LISTEN_PORT][1][:2]) == (51821,)
    peers_flags, peers = device[WGDEVICE_A_PEERS]
    assert peers_flags == NLA_F_NESTED
    [(_, peer_flags, peer_payload)] = raw_attributes(peers)
    assert peer_flags == NLA_F_NESTED
    peer_raw = {kind: payload for kind, _, payload in raw_attributes(peer_payload)}
    sockaddr = peer_raw[WGPEER_A_ENDPOINT]
    # The kernel takes only an exact sockaddr_in (16 bytes) or sockaddr_in6 (28).
    assert len(sockaddr) == (16 if family == 2 else 28)
    assert struct.unpack_from("=H", sockaddr)[0] == family
    assert struct.unpack_from(">H", sockaddr, 2)[0] == port  # network byte order
    assert ipaddress.ip_address(sockaddr[4:8] if family == 2 else sockaddr[8:24]) == ipaddress.ip_address(addr)
    # As the kernel reads the peer flags: replace the allowed IPs (the device
    # ends with exactly these), and neither "remove" nor "update only" (which
    # would never create a missing peer).
    assert peer.get_attr("WGPEER_A_FLAGS") == KERNEL_WGPEER_F_REPLACE_ALLOWEDIPS


def test_the_kernel_message_of_a_server_has_no_endpoint(server_settings):
    _, message = kernel_message("wgm4v6", server_settings)
    assert message.get_attr("WGDEVICE_A_IFNAME") == "wgm4v6"
    [peer] = message.get_attr("WGDEVICE_A_PEERS")
    assert peer.get_attr("WGPEER_A_ENDPOINT") is None
    assert peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") == 0


def test_parse_kernel_info_reads_what_the_kernel_sends(wgkeys):
    """A WG_CMD_GET_DEVICE answer, encoded and decoded by pyroute2 as it
    would arrive from the kernel."""
    (_, public), (_, peer_public), _ = wgkeys
    answer = wgmsg()
    answer["cmd"] = 0
    answer["version"] = 1
    answer["attrs"] = [
        ["WGDEVICE_A_IFNAME", "wgm2"],
        ["WGDEVICE_A_PUBLIC_KEY", public],
        ["WGDEVICE_A_LISTEN_PORT", 51820],
        ["WGDEVICE_A_PEERS", [{"attrs": [
            ["WGPEER_A_PUBLIC_KEY", peer_public],
            ["WGPEER_A_ENDPOINT", {"addr": "2001:db8::7", "port": 51999}],
            ["WGPEER_A_LAST_HANDSHAKE_TIME", {"tv_sec": 1700000000, "tv_nsec": 250000000}],
            ["WGPEER_A_RX_BYTES", 1234],
            ["WGPEER_A_TX_BYTES", 5678],
        ]}]],
    ]
    answer.encode()
    received = wgmsg(answer.data)
    received.decode()
    status = parse_kernel_info([received])
    assert status.listen_port == 51820
    assert status.public_key == public
    [peer] = status.peers
    assert peer.public_key == peer_public
    assert peer.endpoint == "[2001:db8::7]:51999"
    assert peer.last_handshake == pytest.approx(1700000000.25)
    assert (peer.rx_bytes, peer.tx_bytes) == (1234, 5678)


def test_choose_backend_honours_an_explicit_setting(tmp_path):
    assert isinstance(wireguard.choose_backend("kernel", tmp_path), wireguard.KernelBackend)
    userspace = wireguard.choose_backend("userspace", tmp_path)
    assert isinstance(userspace, wireguard.UserspaceBackend) and userspace.socket_dir == tmp_path


def test_the_kernel_module_is_found_by_its_generic_netlink_family():
    # nlctrl is the family that answers for the others: always there.
    assert wireguard.genl_family_exists("nlctrl")
    assert not wireguard.genl_family_exists("no-such-family")
    assert wireguard.kernel_module_available() == wireguard.genl_family_exists("wireguard")


def test_a_kernel_module_that_was_not_found_is_asked_for_again(monkeypatch):
    # A long-running process (the join helper) must not stay on wireguard-go
    # because one check failed; a yes is kept.
    answers = iter([False, True, False])
    monkeypatch.setattr(wireguard, "genl_family_exists", lambda name: next(answers))
    monkeypatch.setattr(wireguard, "_kernel_module_seen", False)
    monkeypatch.setattr(wireguard, "run", lambda *args, **kwargs: None)  # no modprobe
    assert [wireguard.kernel_module_available() for _ in range(3)] == [False, True, True]
