"""The secrets of a link, derived on each side instead of sent.

Both ends of a link hold one WireGuard key pair each and the other's public
key, so both can compute X25519(own private, peer public), the same 32 bytes
on either side and known to nobody else. From it HKDF-SHA256 derives:

- the preshared key WireGuard mixes into the handshake, and
- the key that signs the link's own API requests (/update, /disconnect, and
  a /connect that replaces a half which already carried traffic).

Nothing secret crosses the wire: the join API carries public keys only.
Each purpose has its own HKDF label and both public keys are part of it, so
the two keys are unrelated to each other and to any other link's. A new
WireGuard key (wgmesh rekey) gives the link new derived keys on both sides.

The preshared key made this way adds nothing against an attacker who can
break Curve25519 (it comes from the same keys); what it buys is that no
preshared key is ever stored anywhere but on the two ends.
"""

import base64
import hashlib
import hmac
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import WgmeshError

_LABEL = b"wgmesh link v2 "
SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")


def _raw(key: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise WgmeshError(f"{what} is not a WireGuard key (32 bytes in base64)")
    return raw


def _derive(private_key: str, peer_public_key: str, purpose: bytes) -> bytes:
    own = X25519PrivateKey.from_private_bytes(_raw(private_key, "the link's private key"))
    peer_raw = _raw(peer_public_key, "the peer's public key")
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(peer_raw))
    except ValueError:
        shared = bytes(32)  # OpenSSL refuses what would give an all-zero secret
    if shared == bytes(32):
        # A low-order peer key makes the "secret" public: refuse it.
        raise WgmeshError("the peer's public key is not usable (low-order point)")
    pair = b"".join(sorted((_public_bytes(own), peer_raw)))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL + purpose + b" " + pair).derive(shared)


def _public_bytes(private: X25519PrivateKey) -> bytes:
    # public_bytes_raw() is newer than bookworm's cryptography 38.
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def preshared_key(private_key: str, peer_public_key: str) -> str:
    """The link's WireGuard preshared key, as base64 (the link files' form)."""
    return base64.b64encode(_derive(private_key, peer_public_key, b"psk")).decode()


def signing_key(private_key: str, peer_public_key: str) -> bytes:
    return _derive(private_key, peer_public_key, b"sign")


def sign(key: bytes, method: str, path: str, body: bytes) -> str:
    message = f"{method.upper()} {path}\n".encode() + body
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signature_matches(key: bytes, method: str, path: str, body: bytes, claimed: str) -> bool:
    claimed = claimed.strip().lower()
    # compare_digest takes ASCII only: anything but 64 hex digits simply does not match.
    if not SIGNATURE_RE.fullmatch(claimed):
        return False
    return hmac.compare_digest(sign(key, method, path, body), claimed)
