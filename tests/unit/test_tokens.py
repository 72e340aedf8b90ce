"""Join tokens: default token, extra tokens with expiry/uses, revoke, refund."""

import hmac
import re
import time

import pytest

from unit_helpers import file_mode
from wgmesh_common import tokens
from wgmesh_common.errors import ConfigError, WgmeshError
from wgmesh_common.tokens import Token, TokenStore, find


@pytest.fixture
def store(paths) -> TokenStore:
    return TokenStore(paths.tokens_file)


def test_default_token_is_stable_and_stored_0600(store, paths):
    first = store.default_token()
    assert store.default_token() == first
    assert TokenStore(paths.tokens_file).default_token() == first
    assert file_mode(paths.tokens_file) == 0o600
    [token] = store.load()
    assert token.default and token.expires is None and token.uses_left is None


def test_tokens_carry_at_least_128_random_bits(tmp_path):
    values = [TokenStore(tmp_path / f"t{i}.toml").default_token() for i in range(20)]
    for value in values:
        # URL-safe base64: 6 bits per character.
        assert re.fullmatch(r"[A-Za-z0-9_-]+", value)
        assert len(value) * 6 >= 128
    assert len(set(values)) == len(values)
    # Every position varies across tokens: no fixed prefix eating the entropy.
    assert all(len({v[i] for v in values}) > 1 for i in range(len(values[0])))


def test_create_with_expiry_and_uses(store):
    before = time.time()
    token = store.create(expires_in=3600, uses=2)
    assert before + 3600 <= token.expires <= time.time() + 3600
    assert token.uses_left == 2 and not token.default
    assert token.value != store.default_token()
    assert store.load()[0] == token
    assert store.check(token.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"uses": 0}, "at least one use"),
    ({"uses": -1}, "at least one use"),
    ({"expires_in": 0}, "lifetime must be positive"),
    ({"expires_in": -5}, "lifetime must be positive"),
])
def test_create_refuses_nonsense(store, kwargs, message):
    with pytest.raises(WgmeshError, match=message):
        store.create(**kwargs)
    assert store.load() == []


def test_consume_decrements_and_stops_at_zero(store):
    token = store.create(uses=2)
    assert store.consume(token.value) is True
    assert store.load()[0].uses_left == 1
    assert store.consume(token.value) is True
    assert store.load()[0].uses_left == 0
    assert store.consume(token.value) is False
    assert store.check(token.value) is False
    assert store.load()[0].uses_left == 0


def test_consume_of_an_unlimited_token_changes_nothing(store, paths):
    value = store.default_token()
    before = paths.tokens_file.read_bytes()
    for _ in range(3):
        assert store.consume(value)
    assert paths.tokens_file.read_bytes() == before


def test_refund_restores_a_use(store):
    token = store.create(uses=1)
    assert store.consume(token.value)
    assert not store.check(token.value)
    store.refund(token.value)
    assert store.load()[0].uses_left == 1
    assert store.consume(token.value)


def test_refund_of_an_unknown_token_changes_nothing(store, paths):
    store.create(uses=1)
    before = paths.tokens_file.read_bytes()
    store.refund("nope")
    assert paths.tokens_file.read_bytes() == before


def test_revoke(store):
    keep = store.default_token()
    gone = store.create(uses=3)
    assert store.revoke(gone.value) is True
    assert [t.value for t in store.load()] == [keep]
    assert store.check(gone.value) is False
    assert store.revoke(gone.value) is False
    assert store.check(keep)


def test_expired_tokens_are_refused(store):
    token = store.create(expires_in=60)
    assert store.check(token.value, now=token.expires - 1)
    assert not store.check(token.value, now=token.expires)
    assert not store.check(token.value, now=token.expires + 1000)


def test_create_prunes_spent_and_expired_tokens_but_keeps_the_default(store, paths):
    default = store.default_token()
    spent = store.create(uses=1)
    store.consume(spent.value)
    expired = Token("x" * 32, 0.0, expires=1.0)
    store._save(store.load() + [expired])
    fresh = store.create()
    assert [t.value for t in store.load()] == [default, fresh.value]


def test_wrong_candidates_are_refused(store):
    value = store.default_token()
    for candidate in ("", value[:-1], value + "x", value.upper() if value.upper() != value else value.lower(), " " + value):
        assert not store.check(candidate)


def test_find_returns_the_match_when_it_is_last():
    now = 1000.0
    many = [Token(f"token-{i:03d}", 0.0) for i in range(50)]
    assert find(many, "token-049", now) is many[-1]
    assert find(many, "token-000", now) is many[0]
    assert find(many, "token-050", now) is None


def test_find_compares_every_token_without_stopping_early(monkeypatch):
    many = [Token(f"token-{i:03d}", 0.0) for i in range(10)]
    compared = []
    real = hmac.compare_digest

    def counting(a, b):
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", counting)
    assert find(many, "token-000", 0.0) is many[0]
    # The match was first, and still every token was compared.
    assert compared == [t.value.encode() for t in many]


def test_find_skips_a_matching_token_that_is_not_usable():
    spent = Token("same", 0.0, uses_left=0)
    expired = Token("other", 0.0, expires=10.0)
    assert find([spent], "same", 0.0) is None
    assert find([expired], "other", 10.0) is None
    assert find([expired], "other", 9.0) is expired


def test_a_broken_token_file_is_a_config_error(paths, store):
    paths.tokens_file.parent.mkdir(parents=True)
    paths.tokens_file.write_text('[[token]]\nvalue = "x"\n')
    with pytest.raises(ConfigError, match="bad token entry"):
        store.load()
    paths.tokens_file.write_text('token = "x"\n')
    with pytest.raises(ConfigError, match="must be an array of tables"):
        store.load()


def test_generated_tokens_are_letters_and_digits_of_190_bits():
    import math

    from wgmesh_common import tokens

    values = {tokens.generate() for _ in range(500)}
    assert len(values) == 500
    # A token that starts with "-" is taken for an option by `wgmesh connect URL TOKEN`.
    assert all(v.isascii() and v.isalnum() and len(v) == 32 for v in values)
    assert math.log2(len(tokens.TOKEN_ALPHABET)) * tokens.TOKEN_LENGTH >= 190
