"""wgmesh.toml: schema, defaults, validation and comment-keeping edits."""

import ipaddress
import os
import re
import tomllib

import pytest

from unit_helpers import REPO
from wgmesh_common import config
from wgmesh_common.errors import ConfigError, NotInitialisedError
from wgmesh_common.fieldtypes import has_type


def test_defaults():
    c = config.defaults()
    assert c.node_id is None and not c.initialised and not c.is_client
    assert c.subnet == ipaddress.IPv4Network("10.0.0.0/16")
    assert c.node_prefix == 23
    assert c.subnet6 == ipaddress.IPv6Network("fd10::/48")
    assert c.vxlan_subnet == ipaddress.IPv4Network("10.0.251.0/24")
    assert c.client_id_start == 200
    assert (c.api_public, c.api_port) == (False, 8080)
    assert (c.backend, c.port_base, c.mtu, c.keepalive) == ("auto", 51820, 1420, 25)
    assert (c.ospf_hello, c.ospf_dead, c.base_cost) == (1, 4, 100)
    assert c.service_manager == "auto"
    assert (c.public_ipv4, c.public_ipv6) == (None, None)
    assert c.transport == "auto" and c.proximity_cutoff == 0


def test_require_id_on_an_uninitialised_node():
    with pytest.raises(NotInitialisedError, match="wgmesh init"):
        config.defaults().require_id()


def test_a_full_valid_document():
    c = config.parse({
        "node": {"id": 202, "public_ipv4": "192.0.2.1", "public_ipv6": "2001:db8::1"},
        "mesh": {"subnet": "10.8.0.0/16", "vxlan_subnet": "10.8.251.0/24", "node_prefix": 24, "subnet6": "fd99::/48"},
        "api": {"public": True, "port": 9000},
        "wireguard": {"backend": "userspace", "port_base": 40000, "mtu": 1380, "keepalive": 0},
        "ospf": {"hello": 2, "dead": 10, "base_cost": 50},
        "system": {"service_manager": "direct"},
    })
    assert c.node_id == 202 and c.require_id() == 202 and c.is_client
    assert c.subnet == ipaddress.IPv4Network("10.8.0.0/16") and c.node_prefix == 24
    assert c.api_public is True and c.api_port == 9000
    assert (c.backend, c.port_base, c.mtu, c.keepalive) == ("userspace", 40000, 1380, 0)
    assert (c.ospf_hello, c.ospf_dead, c.base_cost) == (2, 10, 50)
    assert c.service_manager == "direct"


def test_load_of_a_missing_file_is_an_uninitialised_node(tmp_path):
    assert config.load(tmp_path / "nope.toml") == config.defaults()


def test_load_names_the_file_when_it_is_not_toml(tmp_path):
    path = tmp_path / "wgmesh.toml"
    path.write_text("[node\nid = 0\n")
    with pytest.raises(ConfigError, match=rf"^{path}: not valid TOML"):
        config.load(path)


BAD = [
    ({"bogus": {}}, "unknown section [bogus]"),
    ({"node": 5}, "node must be a table"),
    ({"node": {"idd": 0}}, "unknown key node.idd"),
    ({"ospf": {"hello": 1, "helo": 2}}, "unknown key ospf.helo"),
    ({"node": {"id": "0"}}, "node.id must be an integer, not '0'"),
    ({"node": {"id": True}}, "node.id must be an integer, not True"),
    ({"api": {"port": False}}, "api.port must be an integer, not False"),
    ({"node": {"id": 1.5}}, "node.id must be an integer"),
    ({"api": {"public": 1}}, "api.public must be true or false, not 1"),
    ({"api": {"public": "yes"}}, "api.public must be true or false"),
    ({"mesh": {"subnet": 10}}, "mesh.subnet must be a string, not 10"),
    ({"node": {"id": 255}}, "node.id must be between 0 and 254"),
    ({"node": {"id": -2}}, "node.id must be between 0 and 254"),
    ({"node": {"id": 3}}, "node.id 3 is not a multiple of 2"),
    ({"node": {"id": 250}}, "node.id 250 would overlap the VXLAN subnet 10.0.251.0/24"),
    ({"api": {"port": 0}}, "api.port must be between 1 and 65535"),
    ({"api": {"port": 65536}}, "api.port must be between 1 and 65535"),
    ({"wireguard": {"port_base": 80}}, "wireguard.port_base must be between 1024 and 65000"),
    ({"wireguard": {"mtu": 1000}}, "wireguard.mtu must be between 1280 and 9000"),
    ({"wireguard": {"backend": "magic"}}, "wireguard.backend must be one of auto, kernel, userspace"),
    ({"wireguard": {"transport": 4}}, "wireguard.transport must be a string, not 4"),
    ({"wireguard": {"transport": "5"}}, "wireguard.transport must be one of auto, 4, 6"),
    ({"node": {"proximity_cutoff": -1}}, "node.proximity_cutoff must be between 0 and 100000"),
    ({"system": {"service_manager": "openrc"}}, "system.service_manager must be one of auto, systemd, direct"),
    ({"mesh": {"node_prefix": 25}}, "mesh.node_prefix must be between 22 and 24"),
    ({"mesh": {"subnet": "banana"}}, "mesh.subnet 'banana' is not a network with a prefix"),
    ({"mesh": {"subnet": "10.0.0.1/16"}}, "mesh.subnet '10.0.0.1/16' has host bits set (did you mean 10.0.0.0/16?)"),
    ({"mesh": {"subnet": "fd10::/48"}}, "mesh.subnet must be an IPv4 network"),
    ({"mesh": {"subnet6": "10.0.0.0/16"}}, "mesh.subnet6 must be an IPv6 network"),
    ({"mesh": {"subnet6": "fd10::/64"}}, "mesh.subnet6 fd10::/64 must be a /56 or larger"),
    ({"mesh": {"subnet": "10.0.0.0"}}, "mesh.subnet 10.0.0.0/32 is smaller than one node block"),
    ({"mesh": {"vxlan_subnet": "10.9.0.0/24"}}, "mesh.vxlan_subnet 10.9.0.0/24 must lie inside mesh.subnet"),
    ({"mesh": {"vxlan_subnet": "10.0.251.0/25"}}, "mesh.vxlan_subnet 10.0.251.0/25 must be a /24 or larger"),
    ({"node": {"public_ipv4": "1.2.3"}}, "node.public_ipv4 '1.2.3' is not an IPv4 address"),
    ({"node": {"public_ipv4": "2001:db8::1"}}, "node.public_ipv4 must be an IPv4 address"),
    ({"node": {"public_ipv6": "192.0.2.1"}}, "node.public_ipv6 must be an IPv6 address"),
    # A subnet too small for the ID: 10.0.16.0/23 is outside 10.0.0.0/20.
    ({"node": {"id": 16}, "mesh": {"subnet": "10.0.0.0/20", "vxlan_subnet": "10.0.15.0/24"}},
     "node.id 16 does not fit in mesh subnet 10.0.0.0/20"),
    ({"ospf": {"hello": 3, "dead": 3}}, "ospf.dead (3) must be longer than ospf.hello (3)"),
    ({"ospf": {"dead": 1}}, "ospf.dead must be between 2 and 65535"),
    ({"ospf": {"hello": 5}}, "ospf.dead (4) must be longer than ospf.hello (5)"),
]


@pytest.mark.parametrize("document, message", BAD, ids=[m for _, m in BAD])
def test_bad_input_gives_a_one_line_error_naming_the_key(document, message):
    with pytest.raises(ConfigError) as caught:
        config.parse(document, "/etc/wgmesh/wgmesh.toml")
    text = str(caught.value)
    assert text.startswith("/etc/wgmesh/wgmesh.toml: ")
    assert message in text
    assert "\n" not in text


def test_the_shipped_default_config_is_valid_and_all_defaults():
    shipped = REPO / "etc" / "wgmesh" / "wgmesh.toml"
    if not shipped.exists():
        pytest.skip("etc/wgmesh/wgmesh.toml is not in this tree")
    assert config.parse(tomllib.loads(shipped.read_text())) == config.defaults()


def test_the_shipped_default_config_documents_every_setting():
    shipped = REPO / "etc" / "wgmesh" / "wgmesh.toml"
    if not shipped.exists():
        pytest.skip("etc/wgmesh/wgmesh.toml is not in this tree")
    documented, section = set(), None
    for line in shipped.read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif line.startswith("#") and " = " in line and not line.startswith("# "):
            documented.add((section, line[1:].split(" = ")[0]))
    assert documented == {(s, k) for s, keys in config.SCHEMA.items() for k in keys}


@pytest.mark.parametrize("section, key, text, value", [
    ("api", "public", "yes", True),
    ("api", "public", "Off", False),
    ("api", "port", "9090", 9090),
    ("wireguard", "backend", "kernel", "kernel"),
])
def test_coerce(section, key, text, value):
    assert config.coerce(section, key, text) == value


@pytest.mark.parametrize("section, key, text, message", [
    ("api", "public", "maybe", "api.public must be true or false, not 'maybe'"),
    ("api", "port", "80x", "api.port must be an integer, not '80x'"),
    ("api", "colour", "red", "unknown setting api.colour"),
    ("nope", "port", "1", "unknown setting nope.port"),
])
def test_coerce_refuses(section, key, text, message):
    with pytest.raises(ConfigError, match=message):
        config.coerce(section, key, text)


@pytest.mark.parametrize("value, rendered", [(True, "true"), (False, "false"), (7, "7"), ('a"b\\c', '"a\\"b\\\\c"')])
def test_render_value_round_trips_through_toml(value, rendered):
    assert config.render_value(value) == rendered
    assert tomllib.loads(f"x = {rendered}")["x"] == value


DOCUMENT = """\
# Top comment.

[node]
# The ID.
id = 0

[api]
# Listen everywhere?
#public = false
#port = 8080   # default

[ospf]
hello = 1  # seconds
# dead = 4
"""


def test_set_values_edits_a_live_line_in_place_and_keeps_comments():
    result = config.set_values(DOCUMENT, {("ospf", "hello"): 2})
    assert result == DOCUMENT.replace("hello = 1  # seconds", "hello = 2  # seconds")


def test_set_values_inserts_after_a_commented_out_example():
    result = config.set_values(DOCUMENT, {("api", "port"): 9000, ("ospf", "dead"): 9})
    lines = result.splitlines()
    assert lines[lines.index("#port = 8080   # default") + 1] == "port = 9000"
    assert lines[lines.index("# dead = 4") + 1] == "dead = 9"
    # Everything else is untouched.
    assert [l for l in lines if l not in ("port = 9000", "dead = 9")] == DOCUMENT.splitlines()
    parsed = tomllib.loads(result)
    assert parsed["api"] == {"port": 9000}
    assert parsed["ospf"] == {"hello": 1, "dead": 9}


def test_set_values_adds_a_missing_key_at_the_end_of_its_section():
    result = config.set_values(DOCUMENT, {("node", "public_ipv4"): "192.0.2.1"})
    lines = result.splitlines()
    assert lines[lines.index("id = 0") + 1] == 'public_ipv4 = "192.0.2.1"'
    # The blank line separating [node] from [api] stays where it was.
    assert lines[lines.index("id = 0") + 2] == ""
    assert tomllib.loads(result)["node"] == {"id": 0, "public_ipv4": "192.0.2.1"}


def test_set_values_appends_a_missing_section():
    result = config.set_values(DOCUMENT, {("wireguard", "mtu"): 1380})
    assert result.startswith(DOCUMENT)
    assert result.endswith("\n[wireguard]\nmtu = 1380\n")
    assert tomllib.loads(result)["wireguard"] == {"mtu": 1380}


def test_set_values_on_an_empty_document():
    result = config.set_values("", {("node", "id"): 4, ("api", "public"): True})
    assert tomllib.loads(result) == {"node": {"id": 4}, "api": {"public": True}}


def test_set_values_only_touches_the_named_section():
    text = "[api]\nport = 1\n\n[wireguard]\nport_base = 2\n"
    result = config.set_values(text, {("wireguard", "port_base"): 3000})
    assert tomllib.loads(result) == {"api": {"port": 1}, "wireguard": {"port_base": 3000}}


def test_set_values_does_not_mistake_a_longer_key_for_the_key():
    text = "[mesh]\n#subnet6 = \"fd10::/48\"\n"
    result = config.set_values(text, {("mesh", "subnet"): "10.1.0.0/16"})
    assert tomllib.loads(result)["mesh"] == {"subnet": "10.1.0.0/16"}
    assert '#subnet6 = "fd10::/48"' in result


def test_write_settings_edits_the_file_and_returns_the_config(tmp_path):
    path = tmp_path / "wgmesh.toml"
    path.write_text(DOCUMENT)
    result = config.write_settings(path, {("api", "port"): 9000})
    assert result.api_port == 9000 and result.node_id == 0
    text = path.read_text()
    assert "# Listen everywhere?" in text and "port = 9000" in text
    assert config.load(path).api_port == 9000


def test_write_settings_creates_the_file(tmp_path):
    path = tmp_path / "etc" / "wgmesh.toml"
    config.write_settings(path, {("node", "id"): 8})
    assert config.load(path).node_id == 8


@pytest.mark.parametrize("changes, message", [
    ({("api", "port"): 70000}, "api.port must be between 1 and 65535"),
    ({("ospf", "hello"): 4}, "ospf.dead (4) must be longer than ospf.hello (4)"),
    ({("node", "id"): 3}, "node.id 3 is not a multiple of 2"),
    ({("wireguard", "colour"): "red"}, "unknown key wireguard.colour"),
    ({("mesh", "node_prefix"): 24, ("mesh", "vxlan_subnet"): "10.0.0.0/24"}, "node.id 0 would overlap the VXLAN"),
])
def test_write_settings_refuses_an_invalid_result_and_leaves_the_file(tmp_path, changes, message):
    path = tmp_path / "wgmesh.toml"
    path.write_text(DOCUMENT)
    before = os.stat(path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.write_settings(path, changes)
    assert path.read_text() == DOCUMENT
    assert os.stat(path).st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wgmesh.toml"]


def test_write_settings_refuses_an_edit_that_breaks_toml(tmp_path):
    path = tmp_path / "wgmesh.toml"
    # A duplicate [node] table: the edit lands in the first, the file stays invalid.
    broken = "[node]\nid = 0\n[node]\nid = 2\n"
    path.write_text(broken)
    with pytest.raises(ConfigError, match="is not valid TOML, so it was not changed"):
        config.write_settings(path, {("api", "port"): 9000})
    assert path.read_text() == broken


@pytest.mark.parametrize("value, kind, expected", [
    (1, int, True), (True, int, False), (False, int, False), (True, bool, True), (1, bool, False),
    (1.5, (int, float), True), (True, (int, float), False), ("1", int, False), (2, (int, float), True),
])
def test_a_bool_is_never_a_number_in_a_typed_field(value, kind, expected):
    assert has_type(value, kind) is expected


@pytest.mark.parametrize("text, expected", [
    (None, False),                                  # no file yet
    ((REPO / "etc/wgmesh/wgmesh.toml").read_text(), False),  # the shipped file: "#id = 0"
    ("[node]\nid = 2\n", True),
    ("[node]\n  id=4 # set by wgmesh init\n", True),
    ("[node]\nid = \n", True),                      # unreadable: the migration names it
])
def test_the_postinst_asks_the_config_module_whether_a_node_is_initialised(tmp_path, text, expected):
    path = tmp_path / "wgmesh.toml"
    if text is not None:
        path.write_text(text)
    assert config.initialised_file(path) is expected


@pytest.mark.parametrize("make", [
    lambda path: path.mkdir(),                                  # IsADirectoryError
    lambda path: path.write_bytes(b"[node]\nid = 2 # \xff\xfe\n"),  # not UTF-8
], ids=["directory", "not-utf8"])
def test_a_config_the_postinst_cannot_read_counts_as_initialised_with_one_line(tmp_path, capsys, make):
    # So `wgmesh migrate` runs and fails loudly instead of being skipped.
    path = tmp_path / "wgmesh.toml"
    make(path)
    assert config.initialised_file(path) is True
    said = capsys.readouterr().err
    assert said.startswith(f"wgmesh: cannot read {path} (") and said.count("\n") == 1, said
