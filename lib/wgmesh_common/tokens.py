"""Join tokens: /etc/wgmesh/tokens.toml, 0600, owned by this module.

A token is 32 random letters and digits (190 bits): no "-" or "_", so it
is never taken for a command-line option or cut at a word boundary. The
default token never expires and has unlimited uses; `wgmesh token --new`
makes extra ones with an expiry and/or a use count. Comparison is
constant-time and never stops at the first match, so timing tells nothing
about which token or how much of it matched.
"""

import hmac
import secrets
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError, WgmeshError
from .tomlio import SECRET_MODE, file_lock, read_toml, write_toml

TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 32


@dataclass(frozen=True)
class Token:
    value: str
    created: float
    expires: float | None = None  # epoch seconds; None: never
    uses_left: int | None = None  # None: unlimited
    default: bool = False

    def usable(self, now: float) -> bool:
        if self.expires is not None and now >= self.expires:
            return False
        return self.uses_left is None or self.uses_left > 0


def generate() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def parse(data: dict, source: str) -> list[Token]:
    entries = data.get("token", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: 'token' must be an array of tables")
    try:
        return [Token(**entry) for entry in entries]
    except TypeError as error:
        raise ConfigError(f"{source}: bad token entry: {error}") from None


def find(tokens: list[Token], candidate: str, now: float) -> Token | None:
    """The usable token equal to candidate, compared in constant time."""
    found = None
    candidate_bytes = candidate.encode()
    for token in tokens:
        if hmac.compare_digest(token.value.encode(), candidate_bytes) and token.usable(now):
            found = token
    return found


class TokenStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _locked(self):
        return file_lock(self.path.with_name(f".{self.path.name}.lock"))

    def load(self) -> list[Token]:
        if not self.path.exists():
            return []
        return parse(read_toml(self.path), str(self.path))

    def _save(self, tokens: list[Token]) -> None:
        write_toml(self.path, {"token": [asdict(t) for t in tokens]}, SECRET_MODE)

    def default_token(self) -> str:
        """The node's standing token, created on first use."""
        with self._locked():
            tokens = self.load()
            for token in tokens:
                if token.default:
                    return token.value
            token = Token(generate(), time.time(), default=True)
            self._save(tokens + [token])
            return token.value

    def create(self, expires_in: float | None = None, uses: int | None = None) -> Token:
        if uses is not None and uses < 1:
            raise WgmeshError("a token needs at least one use")
        if expires_in is not None and expires_in <= 0:
            raise WgmeshError("a token's lifetime must be positive")
        now = time.time()
        token = Token(generate(), now, now + expires_in if expires_in else None, uses)
        with self._locked():
            self._save(self._pruned(self.load(), now) + [token])
        return token

    def revoke(self, value: str) -> bool:
        with self._locked():
            tokens = self.load()
            kept = [t for t in tokens if not hmac.compare_digest(t.value.encode(), value.encode())]
            if len(kept) == len(tokens):
                return False
            self._save(kept)
            return True

    def check(self, candidate: str, now: float | None = None) -> bool:
        return find(self.load(), candidate, time.time() if now is None else now) is not None

    def consume(self, candidate: str) -> bool:
        """Use a token once; False when no usable token matches."""
        with self._locked():
            now = time.time()
            tokens = self.load()
            match = find(tokens, candidate, now)
            if match is None:
                return False
            if match.uses_left is not None:
                spent = Token(match.value, match.created, match.expires, match.uses_left - 1, match.default)
                # Not pruned here: a spent token must stay refundable.
                self._save([spent if t is match else t for t in tokens])
            return True

    def refund(self, candidate: str) -> None:
        """Give back a use taken by consume() for a join that then failed."""
        with self._locked():
            tokens = self.load()
            for index, token in enumerate(tokens):
                if token.uses_left is not None and hmac.compare_digest(token.value.encode(), candidate.encode()):
                    tokens[index] = Token(token.value, token.created, token.expires, token.uses_left + 1, token.default)
                    self._save(tokens)
                    return

    @staticmethod
    def _pruned(tokens: list[Token], now: float) -> list[Token]:
        # Spent and expired tokens can never match again; keep the file short.
        return [t for t in tokens if t.default or t.usable(now)]
