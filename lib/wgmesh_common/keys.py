"""WireGuard key material, made by wireguard-tools' `wg` so the curve code is
the audited one. Private keys travel over pipes, never on a command line."""

import base64
import secrets
import subprocess

from .errors import WgmeshError
from .process import run


def _wg(args: list[str], stdin: str | None = None) -> str:
    try:
        result = run(["wg", *args], input=stdin, capture_output=True, text=True, check=True, timeout=10)
    except FileNotFoundError:
        raise WgmeshError("the 'wg' command is missing: install wireguard-tools") from None
    except subprocess.CalledProcessError as error:
        raise WgmeshError(f"wg {args[0]} failed: {error.stderr.strip()}") from None
    return result.stdout.strip()


def generate_private_key() -> str:
    return _wg(["genkey"])


def public_key(private_key: str) -> str:
    return _wg(["pubkey"], private_key + "\n")


def generate_psk() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def keypair() -> tuple[str, str]:
    private = generate_private_key()
    return private, public_key(private)


def to_hex(key: str) -> str:
    """The UAPI protocol wants keys in hex, the files and the API use base64."""
    return base64.b64decode(key).hex()


def from_hex(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()
