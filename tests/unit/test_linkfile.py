"""Link files: NAME.toml plus NAME.key and NAME.psk."""

import base64

import pytest

from unit_helpers import file_mode, link_data, make_link, random_key
from wgmesh_common import linkfile
from wgmesh_common.errors import ConfigError


def test_parse_accepts_a_good_server_link():
    link = linkfile.parse(link_data(), "wgm2.toml")
    assert link.name == "wgm2" and link.peer_id == 2 and link.role == "listener"
    assert link.type == "wireguard" and link.endpoint is None and link.mtu == 1420 and link.keepalive == 25


def test_parse_accepts_a_good_client_link_with_a_v6_endpoint():
    link = linkfile.parse(link_data(role="dialer", endpoint="[2001:db8::1]:51820", name="wgm2v6", family=6),
                          "wgm2v6.toml")
    assert link.endpoint == "[2001:db8::1]:51820" and link.family == 6


def test_to_dict_round_trips_through_parse():
    link = make_link(role="dialer", endpoint="192.0.2.1:51820", extra={"note": "x"})
    assert linkfile.parse(link.to_dict(), "x") == link
    assert "extra" not in make_link().to_dict()


BAD_KEY = base64.b64encode(b"x" * 31).decode()

BAD = [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"peer4": None}, "missing key 'peer4'"),
    ({"peer_id": "2"}, "peer_id has the wrong type (str)"),
    ({"peer_id": True}, "peer_id has the wrong type (bool)"),
    ({"listen_port": 51820.0}, "listen_port has the wrong type (float)"),
    ({"endpoint": 5}, "endpoint has the wrong type (int)"),
    ({"name": "has space"}, "name 'has space' is not a valid interface name"),
    ({"name": "a" * 16}, "is not a valid interface name"),
    ({"name": "../etc"}, "is not a valid interface name"),
    ({"role": "boss"}, "role must be listener or dialer, not 'boss'"),
    ({"family": 5}, "family must be 4 or 6, not 5"),
    ({"type": "gre"}, "unknown link type 'gre' (known: wireguard)"),
    ({"listen_port": 0}, "listen_port 0 out of range"),
    ({"listen_port": 65536}, "listen_port 65536 out of range"),
    ({"peer_id": 255}, "peer_id 255 out of range"),
    ({"peer_id": -1}, "peer_id -1 out of range"),
    ({"public_key": "not base64!"}, "public_key is not valid base64"),
    ({"public_key": BAD_KEY}, "public_key must decode to 32 bytes, not 31"),
    ({"peer_public_key": "abc"}, "peer_public_key is not valid base64"),
    ({"local4": "10.0.0"}, "local4 is not an IPv4 address"),
    ({"local4": "fd10::4"}, "local4 is not an IPv4 address"),
    ({"peer4": "10.0.0.256"}, "peer4 is not an IPv4 address"),
    ({"local6": "10.0.0.4"}, "local6 is not an IPv6 address"),
    ({"peer6": "fd10::g"}, "peer6 is not an IPv6 address"),
    ({"role": "dialer"}, "a dialer link needs an endpoint"),
    ({"endpoint": "192.0.2.1"}, "endpoint '192.0.2.1' is not ADDRESS:PORT"),
    ({"endpoint": "999.0.2.1:5"}, "endpoint '999.0.2.1:5' has no valid IP address"),
    ({"endpoint": "192.0.2.1:0"}, "endpoint '192.0.2.1:0' has a port out of range"),
    ({"endpoint": "[2001:db8::1]:70000"}, "has a port out of range"),
    ({"endpoint": "2001:db8::1:51820"}, "is not ADDRESS:PORT"),
    ({"endpoint": "example.com:51820"}, "is not ADDRESS:PORT"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[m for _, m in BAD])
def test_parse_rejects_each_bad_field_naming_it(overrides, message):
    data = link_data()
    for key, value in overrides.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    with pytest.raises(ConfigError) as caught:
        linkfile.parse(data, "/etc/wgmesh/links/wgm2.toml")
    text = str(caught.value)
    assert text.startswith("/etc/wgmesh/links/wgm2.toml: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("peer_id, family, name", [(0, 4, "wgm0"), (2, 4, "wgm2"), (254, 4, "wgm254"),
                                                    (2, 6, "wgm2v6"), (254, 6, "wgm254v6")])
def test_link_name(peer_id, family, name):
    assert linkfile.link_name(peer_id, family) == name
    assert linkfile.valid_name(name) and len(name) <= 15


@pytest.mark.parametrize("endpoint, host, port", [
    ("192.0.2.1:51820", "192.0.2.1", 51820),
    ("[2001:db8::1]:1", "2001:db8::1", 1),
    ("[::ffff:192.0.2.1]:65535", "::ffff:192.0.2.1", 65535),
])
def test_parse_and_format_endpoint(endpoint, host, port):
    assert linkfile.parse_endpoint(endpoint) == (host, port)
    assert linkfile.format_endpoint(host, port) == endpoint


def test_format_endpoint_brackets_only_v6():
    assert linkfile.format_endpoint("10.0.0.1", 8080) == "10.0.0.1:8080"
    assert linkfile.format_endpoint("fd10::1", 8080) == "[fd10::1]:8080"


@pytest.mark.parametrize("endpoint", ["", "1.2.3.4:", ":80", "[1.2.3.4]x:80", "[zz::1]:80", "1.2.3.4:99999"])
def test_parse_endpoint_refuses(endpoint):
    with pytest.raises(ConfigError, match="--endpoint"):
        linkfile.parse_endpoint(endpoint, "--endpoint")


@pytest.mark.parametrize("endpoint", [
    "192.0.2.1:51820\n",                  # `$` matches before a final newline
    "[2001:db8::1]:51820\n",
    "192.0.2.1:\uff15\uff11\uff18\uff12\uff10",  # full-width digits: \\d and int() take them
])
def test_an_endpoint_must_match_whole_and_in_ascii(endpoint):
    # A newline in an endpoint would end a UAPI `set` message early.
    with pytest.raises(ConfigError, match="is not ADDRESS:PORT"):
        linkfile.parse_endpoint(endpoint)
    with pytest.raises(ConfigError):
        linkfile.parse(link_data(role="dialer", endpoint=endpoint), "test")


@pytest.mark.parametrize("name", ["wgm2\n", "wgm2\nx", "", "wgm2 ", "a" * 16, "wgm\u0662"])
def test_a_link_name_must_match_whole(name):
    assert not linkfile.valid_name(name)


def test_save_writes_secrets_0600_and_load_reads_it_back(paths):
    link = make_link()
    private, psk = random_key(), random_key()
    linkfile.save(paths, link, private, psk)
    assert file_mode(paths.link_key("wgm2")) == 0o600
    assert file_mode(paths.link_psk("wgm2")) == 0o600
    assert file_mode(paths.link_file("wgm2")) == 0o644
    assert linkfile.read_secret(paths.link_key("wgm2")) == private
    assert linkfile.read_secret(paths.link_psk("wgm2")) == psk
    assert linkfile.load(paths, "wgm2") == link
    assert linkfile.exists(paths, "wgm2")
    # No secret is in the public file.
    assert private not in paths.link_file("wgm2").read_text()
    assert psk not in paths.link_file("wgm2").read_text()


def test_delete_removes_all_three_files(paths):
    linkfile.save(paths, make_link(), random_key(), random_key())
    linkfile.save(paths, make_link(name="wgm4", peer_id=4), random_key(), random_key())
    assert linkfile.delete(paths, "wgm2") is True
    assert sorted(p.name for p in paths.links_dir.iterdir()) == ["wgm4.key", "wgm4.psk", "wgm4.toml"]
    assert linkfile.delete(paths, "wgm2") is False
    assert not linkfile.exists(paths, "wgm2")


def test_load_refuses_a_file_whose_name_does_not_match(paths):
    linkfile.save(paths, make_link(), random_key(), random_key())
    paths.link_file("wgm2").rename(paths.link_file("wgm6"))
    with pytest.raises(ConfigError, match="name 'wgm2' does not match the file name"):
        linkfile.load(paths, "wgm6")


def test_load_all_skips_and_reports_malformed_files(paths):
    linkfile.save(paths, make_link(), random_key(), random_key())
    linkfile.save(paths, make_link(name="wgm4", peer_id=4, offset=6, local4="10.0.0.6", peer4="10.0.0.7"),
                  random_key(), random_key())
    paths.link_file("wgm6").write_text("name = \n")  # not TOML
    paths.link_file("wgm8").write_text('name = "wgm8"\n')  # missing keys
    paths.link_file("wgm10").write_text(paths.link_file("wgm2").read_text())  # name mismatch
    links, problems = linkfile.load_all(paths)
    assert [l.name for l in links] == ["wgm2", "wgm4"]
    assert len(problems) == 3
    assert any(str(paths.link_file("wgm6")) in p and "not valid TOML" in p for p in problems)
    assert any(str(paths.link_file("wgm8")) in p and "missing key" in p for p in problems)
    assert any(str(paths.link_file("wgm10")) in p and "does not match" in p for p in problems)
    assert all("\n" not in p for p in problems)


def test_load_all_without_a_links_directory(paths):
    assert linkfile.load_all(paths) == ([], [])


def test_check_key_accepts_a_real_wireguard_key(wgkeys):
    for private, public in wgkeys:
        assert linkfile.check_key(private, "k") == private
        assert linkfile.check_key(public, "k") == public
    with pytest.raises(ConfigError, match="k must be a base64 string"):
        linkfile.check_key(None, "k")
