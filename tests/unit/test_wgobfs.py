"""The user-space WGOBFS transform against xt_wgobfs: byte-exact reference vectors
(data/wgobfs_vectors.json, a copy of the shared vectors), round trips over every kind
of WireGuard message, and the malformed payloads the kernel target drops."""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given, settings
from hypothesis import strategies as st

from wgmesh_common.wgobfs import chacha_block, deobfuscate, derive_key, obfuscate

VECTORS = json.loads((Path(__file__).parent / "data" / "wgobfs_vectors.json").read_text())
KEPT = [v for v in VECTORS if v["obfs"] is not None]
DROPPED = [v for v in VECTORS if v["obfs"] is None]
KEY = "mysecretkey"


def _kind(vector: dict) -> str:
    return vector["kind"]


def _vector(kind: str) -> tuple[str, bytes, bytes]:
    (vector,) = [v for v in KEPT if v["kind"] == kind]
    return vector["key"], bytes.fromhex(vector["plain"]), bytes.fromhex(vector["obfs"])


def test_vectors_cover_every_message_kind_and_both_keepalive_fates():
    assert {v["kind"] for v in KEPT} >= {"init_mac2_zero", "response_mac2_zero", "cookie", "data_small", "keepalive"}
    assert [v["kind"] for v in DROPPED] == ["keepalive"]


@pytest.mark.parametrize("vector", KEPT, ids=_kind)
def test_obfuscation_reproduces_the_kernel_targets_bytes(vector):
    assert obfuscate(vector["key"], bytes.fromhex(vector["plain"])) == bytes.fromhex(vector["obfs"])


@pytest.mark.parametrize("vector", KEPT, ids=_kind)
def test_deobfuscation_gives_back_the_wireguard_message(vector):
    assert deobfuscate(vector["key"], bytes.fromhex(vector["obfs"])) == bytes.fromhex(vector["plain"])


@pytest.mark.parametrize("vector", DROPPED, ids=_kind)
def test_a_keepalive_the_kernel_target_drops_is_dropped(vector):
    assert obfuscate(vector["key"], bytes.fromhex(vector["plain"])) is None


def test_the_06_drop_chance_option_decides_the_keepalives_fate_instead():
    (dropped,) = DROPPED
    plain = bytes.fromhex(dropped["plain"])
    kept_now = obfuscate(dropped["key"], plain, keepalive_drop_chance=0)
    assert kept_now is not None and deobfuscate(dropped["key"], kept_now) == plain
    _, kept_plain, _ = _vector("keepalive")
    assert obfuscate(KEY, kept_plain, keepalive_drop_chance=255) is None


def test_the_key_is_repeated_to_32_bytes_and_cut_there():
    assert derive_key("mysecretkey") == b"mysecretkeymysecretkeymysecretke"
    assert derive_key("Zq3_4bC-9xYtW2pLmN0sRvUeA7dFgHjK") == b"Zq3_4bC-9xYtW2pLmN0sRvUeA7dFgHjK"


@pytest.mark.parametrize("key", ["", "k" * 33, "a\0b"])
def test_a_key_iptables_would_refuse_is_refused(key):
    with pytest.raises(ValueError, match="wgobfs key"):
        derive_key(key)


def test_the_chacha_core_at_20_rounds_is_chacha20():
    # Only the round count separates the module's ChaCha6 from ChaCha20, whose whole
    # last row is cryptography's 16-byte nonce: the rounds here match audited code.
    chacha_key, row = bytes(range(32)), bytes(range(100, 116))
    audited = Cipher(algorithms.ChaCha20(chacha_key, row), mode=None).encryptor().update(bytes(64))
    assert chacha_block(chacha_key, row, double_rounds=10) == audited


def test_only_the_head_mac2_and_padding_change():
    _, plain, obfs = _vector("init_mac2_zero")
    assert obfs[:16] != plain[:16]
    assert obfs[16:132] == plain[16:132]
    assert obfs[132:148] != bytes(16)


def test_a_nonzero_mac2_travels_as_it_is():
    key, plain, _ = _vector("init_mac2_zero")
    with_cookie_mac = plain[:132] + bytes(range(1, 17))
    obfs = obfuscate(key, with_cookie_mac)
    assert obfs[132:148] == with_cookie_mac[132:148]
    assert deobfuscate(key, obfs) == with_cookie_mac


def test_a_mac2_zero_in_its_first_four_bytes_comes_back_all_zero():
    # The module looks at four bytes only; its peer can but restore sixteen zeros.
    key, plain, _ = _vector("init_mac2_zero")
    odd_mac2 = plain[:132] + bytes(4) + bytes(range(1, 13))
    assert deobfuscate(key, obfuscate(key, odd_mac2)) == plain[:132] + bytes(16)


def test_a_payload_too_short_for_wireguard_is_not_obfuscated():
    assert obfuscate(KEY, bytes([4]) + bytes(30)) is None


@pytest.mark.parametrize("length", [0, 1, 20, 35])
def test_a_payload_too_short_to_carry_padding_is_dropped(length):
    _, _, obfs = _vector("data_small")
    assert deobfuscate("Zq3_4bC-9xYtW2pLmN0sRvUeA7dFgHjK", obfs[:length]) is None


@pytest.mark.parametrize("kind", ["init_mac2_zero", "response_mac2_zero", "cookie", "data_small"])
@pytest.mark.parametrize("claimed_padding", [0, 255])
def test_a_padding_length_of_zero_or_past_the_message_is_dropped(kind, claimed_padding):
    key, plain, obfs = _vector(kind)
    padding = len(obfs) - len(plain)
    # The last byte is the padding length masked: flip it to claim another length.
    tampered = obfs[:-1] + bytes([obfs[-1] ^ padding ^ claimed_padding])
    assert deobfuscate(key, tampered) is None


@pytest.mark.parametrize("kind", ["init_mac2_zero", "response_mac2_zero"])
def test_a_shortened_handshake_with_a_replaced_mac2_is_dropped(kind):
    # Bytes cut from the middle keep the hash input and the length byte intact, so the
    # receiver sees a handshake marked "mac2 replaced" of the wrong length.
    key, _, obfs = _vector(kind)
    assert deobfuscate(key, obfs[:40] + obfs[60:]) is None


def _wireguard_message(kind: int, body: bytes, zero_mac2: bool, data_blocks: int) -> bytes:
    header = bytes([kind, 0, 0, 0])
    if kind == 1:
        message = header + body[:128]
    elif kind == 2:
        message = header + body[:72]
    elif kind == 3:
        return header + body[:60]
    else:
        # A transport message: receiver index, counter, then 16-byte blocks and a tag.
        return header + (body * 2)[: 12 + 16 * data_blocks + 16]
    mac2 = bytes(16) if zero_mac2 else b"\1" + body[-15:]
    return message + mac2


@settings(max_examples=150, deadline=None)
@given(
    key=st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=8),
    kind=st.integers(1, 4),
    body=st.binary(min_size=760, max_size=760),
    zero_mac2=st.booleans(),
    data_blocks=st.integers(0, 88),
)
def test_every_wireguard_message_survives_the_round_trip(key, kind, body, zero_mac2, data_blocks):
    message = _wireguard_message(kind, body, zero_mac2, data_blocks)
    obfs = obfuscate(key, message, keepalive_drop_chance=0)
    padding = len(obfs) - len(message)
    assert 4 <= padding <= (8 if len(message) > 200 else 32)
    assert deobfuscate(key, obfs) == message


@pytest.mark.parametrize("kind", ["response_mac2_zero", "data_small"])
def test_the_receiver_reads_only_the_head_and_the_length_byte(kind):
    # Other versions fill the padding and mac2 differently (rs-wgobfs draws mac2
    # first); a peer must take their packets all the same.
    key, plain, obfs = _vector(kind)
    padding = len(obfs) - len(plain)
    other_fill = obfs[: len(plain)] + bytes(padding - 1) + obfs[-1:]
    if kind == "response_mac2_zero":
        other_fill = other_fill[:76] + bytes(range(16)) + other_fill[92:]
    assert deobfuscate(key, other_fill) == plain
