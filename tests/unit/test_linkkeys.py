"""Derived link secrets: both ends compute the same ones, nobody else can,
and a new key on either side changes them."""

import base64

import pytest

from unit_helpers import random_key
from wgmesh_common import keys, linkkeys
from wgmesh_common.errors import WgmeshError
from wgmesh_common.wireguard import DeviceSettings, uapi_update_request


def pair():
    private = keys.generate_private_key()
    return private, keys.public_key(private)


def test_both_ends_derive_the_same_secrets_and_a_third_key_does_not():
    (a, a_pub), (b, b_pub), (c, _) = pair(), pair(), pair()
    assert linkkeys.preshared_key(a, b_pub) == linkkeys.preshared_key(b, a_pub)
    assert linkkeys.signing_key(a, b_pub) == linkkeys.signing_key(b, a_pub)
    # The two purposes give unrelated keys, and another peer's link has others.
    assert base64.b64decode(linkkeys.preshared_key(a, b_pub)) != linkkeys.signing_key(a, b_pub)
    assert linkkeys.signing_key(c, b_pub) != linkkeys.signing_key(a, b_pub)
    # A rekey on one side gives the link new secrets on both.
    new_a, new_a_pub = pair()
    assert linkkeys.preshared_key(new_a, b_pub) == linkkeys.preshared_key(b, new_a_pub) != \
        linkkeys.preshared_key(a, b_pub)


@pytest.mark.parametrize("peer_public", [
    base64.b64encode(bytes(32)).decode(),  # a low-order point: the "shared" secret would be all zeros
    "not-a-key",
    base64.b64encode(bytes(31)).decode(),
])
def test_a_peer_key_that_gives_no_secret_is_refused(peer_public):
    with pytest.raises(WgmeshError):
        linkkeys.preshared_key(random_key(), peer_public)


def test_an_update_of_a_running_device_keeps_its_peer_and_removes_any_other():
    own, peer, old_peer = random_key(), random_key(), random_key()
    settings = DeviceSettings(private_key=own, listen_port=51820, peer_public_key=peer, preshared_key=random_key(),
                              endpoint="198.18.0.2:51820", keepalive=25)
    message = uapi_update_request(settings, [old_peer, peer])
    assert "replace_peers" not in message  # the staying peer keeps its session
    hexkey = lambda key: base64.b64decode(key).hex()
    assert f"public_key={hexkey(old_peer)}\nremove=true\n" in message
    assert f"public_key={hexkey(peer)}\npreshared_key=" in message
    assert message.endswith("allowed_ip=0.0.0.0/0\nallowed_ip=::/0\n\n")
