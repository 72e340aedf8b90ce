"""The WGOBFS transform of the xt_wgobfs kernel module (0.5 and 0.6), in user space.

A link of type wgobfs runs this behind NFQUEUE where the module cannot be loaded; both
ends must agree byte for byte with a peer that runs the kernel target, so every step
mirrors the module, including its quirks.

Nothing here is random: every "random" byte the module adds (the padding length, the
padding, the fake mac2, the keepalive drop decision) is a keyed hash of bytes 16-31 of
the WireGuard message, which WireGuard itself filled with fresh randomness (an ephemeral
key, a nonce or a Poly1305 tag). The receiver re-derives the same hash from the same
bytes, which the transform leaves untouched, to undo the rest.

The peer depends only on the head mask and the masked length byte; the padding, the
fake mac2 and the keepalive drop are the sender's own choice. So versions that choose
differently still interoperate: the vectors follow the C module (padding drawn before
mac2), where rs-wgobfs, its Rust port, draws mac2 first and sends other bytes.

The hash is ChaCha with 6 rounds (not cryptography's 20-round ChaCha20), whose 16-byte
counter/nonce row is the message's bytes 16-31; obfuscation needs no secrecy, WireGuard
gives that.
"""

import functools
import struct

KEY_SIZE = 32
MAX_KEY_LENGTH = 32
# A keepalive is dropped when a keyed byte of it is over 50 (205 of 256 values, 80 %),
# the rule of xt_wgobfs 0.5 and of the reference vectors. 0.6 made the chance an
# option (--keepalive-drop-chance N drops when the byte is under N, default 205): the
# same 80 %, but the other keepalives. Only the sender decides, so both interoperate.
KEEPALIVE_KEEP_AT_MOST = 50

WG_MIN_LENGTH = 32
MIN_PADDING = 4
MAX_PADDING = 32
# Big packets get little padding so they stay under the path MTU.
MAX_PADDING_BIG = 8
BIG_PACKET = 200

HANDSHAKE_INIT, HANDSHAKE_RESPONSE, DATA = 1, 2, 4
HANDSHAKE_INIT_LENGTH, HANDSHAKE_RESPONSE_LENGTH = 148, 92
KEEPALIVE_LENGTH = 32
MAC2_LENGTH = 16
# A type byte with this bit set says "mac2 was zeros": the receiver puts the zeros back.
MAC2_REPLACED = 0x10

# The first hash (the one that hides the head) uses the plain hash input; each further
# pseudo-random value bumps the input's first byte, starting from this offset.
COUNTER_OFFSET = 42

_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
_MASK = 0xFFFFFFFF


def derive_key(key: str) -> bytes:
    """The 32-byte ChaCha key iptables makes of --key: the string repeated, then cut.

    iptables refuses keys over 32 bytes; an empty key would loop forever in its
    repeat, so it is refused here too."""
    return _derive_key(key)


@functools.lru_cache(maxsize=64)
def _derive_key(key: str) -> bytes:
    raw = key.encode()
    if not raw or len(raw) > MAX_KEY_LENGTH or b"\0" in raw:
        raise ValueError(f"a wgobfs key is 1 to {MAX_KEY_LENGTH} bytes without NUL")
    return (raw * (KEY_SIZE // len(raw) + 1))[:KEY_SIZE]


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & _MASK


def _quarter_round(x: list[int], a: int, b: int, c: int, d: int) -> None:
    x[a] = (x[a] + x[b]) & _MASK
    x[d] = _rotl(x[d] ^ x[a], 16)
    x[c] = (x[c] + x[d]) & _MASK
    x[b] = _rotl(x[b] ^ x[c], 12)
    x[a] = (x[a] + x[b]) & _MASK
    x[d] = _rotl(x[d] ^ x[a], 8)
    x[c] = (x[c] + x[d]) & _MASK
    x[b] = _rotl(x[b] ^ x[c], 7)


def chacha6_block(chacha_key: bytes, row: bytes) -> bytes:
    """One 64-byte ChaCha block with 6 rounds; `row` fills all four words of the last
    row (the module uses the 16 input bytes where ChaCha has counter and nonce).

    The module never needs more than 32 bytes, so one block is all there is; its
    counter scheme for longer outputs never comes into play."""
    return chacha_block(chacha_key, row, double_rounds=3)


def chacha_block(chacha_key: bytes, row: bytes, double_rounds: int) -> bytes:
    """A ChaCha block of any round count: with 10 double rounds it is ChaCha20, which
    lets a test hold this code against an audited implementation."""
    state = [*_SIGMA, *struct.unpack("<8I", chacha_key), *struct.unpack("<4I", row)]
    x = list(state)
    for _ in range(double_rounds):
        _quarter_round(x, 0, 4, 8, 12)
        _quarter_round(x, 1, 5, 9, 13)
        _quarter_round(x, 2, 6, 10, 14)
        _quarter_round(x, 3, 7, 11, 15)
        _quarter_round(x, 0, 5, 10, 15)
        _quarter_round(x, 1, 6, 11, 12)
        _quarter_round(x, 2, 7, 8, 13)
        _quarter_round(x, 3, 4, 9, 14)
    return struct.pack("<16I", *((a + b) & _MASK for a, b in zip(x, state, strict=True)))


def _bumped(hash_input: bytes, count: int) -> bytes:
    """The hash input with its first byte moved on by `count` (wrapping like a u8), as
    the module does to get distinct values from one packet."""
    return bytes([(hash_input[0] + count) & 0xFF]) + hash_input[1:]


def _mac2_offset(packet: bytes | bytearray) -> int | None:
    """Where a handshake's mac2 sits, for the two kinds of message the module touches."""
    if packet[0] == HANDSHAKE_INIT and len(packet) == HANDSHAKE_INIT_LENGTH:
        return HANDSHAKE_INIT_LENGTH - MAC2_LENGTH
    if packet[0] == HANDSHAKE_RESPONSE and len(packet) == HANDSHAKE_RESPONSE_LENGTH:
        return HANDSHAKE_RESPONSE_LENGTH - MAC2_LENGTH
    return None


def _drops_keepalive(keyed_byte: int, keepalive_drop_chance: int | None) -> bool:
    if keepalive_drop_chance is None:
        return keyed_byte > KEEPALIVE_KEEP_AT_MOST
    return keyed_byte < keepalive_drop_chance


def obfuscate(key: str, packet: bytes, keepalive_drop_chance: int | None = None) -> bytes | None:
    """The UDP payload the kernel target sends for a WireGuard message, or None where it
    drops it (most keepalives: a keepalive's fixed 32 bytes would stand out).
    `keepalive_drop_chance` chooses 0.6's rule over 0.5's (see KEEPALIVE_KEEP_AT_MOST).

    A payload under 32 bytes is no WireGuard message; the module would hash bytes past
    its end, so it is refused rather than guessed at."""
    if len(packet) < WG_MIN_LENGTH:
        return None
    chacha_key = derive_key(key)
    hash_input = _bumped(packet[16:32], COUNTER_OFFSET)
    bumps = 0

    if packet[0] == DATA and len(packet) == KEEPALIVE_LENGTH:
        bumps += 1
        keyed_byte = chacha6_block(chacha_key, _bumped(hash_input, bumps))[0]
        if _drops_keepalive(keyed_byte, keepalive_drop_chance):
            return None

    max_padding = MAX_PADDING_BIG if len(packet) > BIG_PACKET else MAX_PADDING
    padding_length = 0
    while not padding_length:
        bumps += 1
        stream = chacha6_block(chacha_key, _bumped(hash_input, bumps))[:MAX_PADDING]
        # The first byte in range is the length; the same 32 bytes are the padding.
        padding_length = next((b for b in stream if MIN_PADDING <= b <= max_padding), 0)

    out = bytearray(packet)
    mac2_at = _mac2_offset(out)
    # The module tests only mac2's first four bytes for zero, and restores all sixteen.
    if mac2_at is not None and not any(out[mac2_at : mac2_at + 4]):
        bumps += 1
        out[mac2_at : mac2_at + MAC2_LENGTH] = chacha6_block(chacha_key, _bumped(hash_input, bumps))[:MAC2_LENGTH]
        out[0] |= MAC2_REPLACED

    head_mask = chacha6_block(chacha_key, packet[16:32])
    out += stream[:padding_length]
    out[-1] = padding_length ^ head_mask[16]
    for i in range(16):
        out[i] ^= head_mask[i]
    return bytes(out)


def deobfuscate(key: str, data: bytes) -> bytes | None:
    """The WireGuard message inside an obfuscated UDP payload, or None where the kernel
    target drops the payload as not one of its own.

    Beyond the module's own checks, a restored mac2 marker on a message of the wrong
    length is refused: the module would zero bytes at a fixed offset past the message,
    and no obfuscator ever sets that marker on such a message."""
    if len(data) < WG_MIN_LENGTH + MIN_PADDING:
        return None
    head_mask = chacha6_block(derive_key(key), data[16:32])
    padding_length = data[-1] ^ head_mask[16]
    if padding_length == 0 or padding_length + WG_MIN_LENGTH > len(data):
        return None
    out = bytearray(data[: len(data) - padding_length])
    for i in range(16):
        out[i] ^= head_mask[i]
    restored_length = {
        MAC2_REPLACED | HANDSHAKE_INIT: HANDSHAKE_INIT_LENGTH,
        MAC2_REPLACED | HANDSHAKE_RESPONSE: HANDSHAKE_RESPONSE_LENGTH,
    }.get(out[0])
    if restored_length is not None:
        if restored_length != len(out):
            return None
        out[-MAC2_LENGTH:] = bytes(MAC2_LENGTH)
    out[0] &= 0x0F
    return bytes(out)
