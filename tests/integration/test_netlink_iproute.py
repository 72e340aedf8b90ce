"""netlink.py against the real kernel and iproute2, each test in a network
namespace of its own (`unshare --net`: it goes when the test's process
ends, whatever happens), plus its parser of `ip -json` on captured output."""

import ipaddress
import subprocess
import sys
import textwrap

from wgmesh_common import netlink
from wgmesh_common.netlink import Route


def in_fresh_netns(code: str) -> str:
    """Run code (with netlink imported) in a new network namespace that has
    a veth pair v0/v1; its stdout."""
    script = "import subprocess\nfrom wgmesh_common import netlink\n" + \
        "subprocess.run(['ip', 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1'], check=True)\n" + \
        "subprocess.run(['ip', 'link', 'set', 'v1', 'up'], check=True)\n" + \
        "subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)\n" + textwrap.dedent(code)
    result = subprocess.run(["unshare", "--net", sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_link_interface_is_configured_idempotently_and_deleted():
    out = in_fresh_netns("""
        cidrs = ["10.0.2.4/31", "fd10::4/127", "fe80::a00:204/64"]
        assert not netlink.interface_is_up("v0")
        netlink.configure_interface("v0", 1380, cidrs)
        netlink.configure_interface("v0", 1380, cidrs)  # a retry finishes, adds nothing twice
        print(sorted(netlink.addresses_of("v0")))
        print(sorted(a for a in netlink.all_addresses() if a[1] in ("v0", "lo")))
        link = subprocess.run(["ip", "-o", "link", "show", "dev", "v0"], capture_output=True, text=True).stdout
        print(netlink.interface_is_up("v0"), link.split(" mtu ")[1].split()[0])
        print(netlink.route_interface("10.0.2.4"), netlink.route_interface("fd10::5"),
              netlink.route_interface("not an address"))
        netlink.remove_addresses("v0", ["10.0.2.4/31", "10.9.9.9/32"])  # one that is not there
        print(sorted(netlink.addresses_of("v0")))
        print(netlink.delete_interface("v0"), netlink.delete_interface("v0"), netlink.interface_exists("v1"))
        try:
            netlink.configure_interface("v0", 1380, cidrs)
        except Exception as error:
            print(type(error).__name__, error)
    """).splitlines()
    assert out[0] == str(sorted(["10.0.2.4/31", "fd10::4/127", "fe80::a00:204/64"]))
    assert out[1] == str(sorted([("10.0.2.4/31", "v0"), ("fd10::4/127", "v0"), ("fe80::a00:204/64", "v0"),
                                 ("127.0.0.1/8", "lo"), ("::1/128", "lo")]))
    assert out[2] == "True 1380"
    assert out[3] == "lo v0 None"
    assert out[4] == str(sorted(["fd10::4/127", "fe80::a00:204/64"]))
    assert out[5] == "True False False"  # deleting one end of a veth takes both
    assert out[6] == "WgmeshError interface v0 does not exist"


def test_mesh_rules_come_once_and_go_and_choose_the_table():
    out = in_fresh_netns("""
        print(netlink.mesh_table(), netlink.mesh_routes()[4], netlink.mesh_routes()[6])
        netlink.ensure_rules()
        netlink.ensure_rules()
        for family in ("-4", "-6"):
            rules = subprocess.run(["ip", family, "rule", "show"], capture_output=True, text=True).stdout
            print(rules.count("lookup 30573 suppress_prefixlength 0"))
        print(netlink.mesh_table())
        netlink.remove_rules()
        print(netlink.mesh_table())
    """).splitlines()
    # An empty table is no routes (ip itself says the table does not exist).
    assert out[0] == f"{netlink.MAIN_TABLE} [] []"
    assert out[1:3] == ["1", "1"]
    assert out[3] == str(netlink.MESH_TABLE)
    assert out[4] == str(netlink.MAIN_TABLE)


def test_a_rule_of_the_same_priority_and_table_that_selects_is_not_the_mesh_rule():
    out = in_fresh_netns("""
        foreign = ["ip", "rule", "add", "priority", "1000", "fwmark", "7", "table", "30573"]
        subprocess.run(foreign, check=True)
        print(netlink.mesh_table())
        netlink.ensure_rules()
        print(netlink.mesh_table())
        netlink.remove_rules()
        rules = subprocess.run(["ip", "rule", "show"], capture_output=True, text=True).stdout
        print(netlink.mesh_table(), "fwmark 0x7 lookup 30573" in rules, "suppress_prefixlength" in rules)
    """).splitlines()
    assert out == [str(netlink.MAIN_TABLE), str(netlink.MESH_TABLE), f"{netlink.MAIN_TABLE} True False"]


def test_routes_are_read_with_their_protocol_and_next_hop():
    out = in_fresh_netns("""
        netlink.configure_interface("v0", 1420, ["10.0.2.4/31"])
        for route in (["10.0.6.1", "via", "10.0.2.5", "proto", "12"],
                      ["blackhole", "10.0.8.0/24"],
                      ["10.0.9.0/24", "nexthop", "via", "10.0.2.5", "dev", "v0"]):
            subprocess.run(["ip", "route", "add", "table", "30573", *route], check=True)
        for route in netlink.routes(4, netlink.MESH_TABLE):
            print(route.destination, route.gateway, route.interface, route.protocol)
    """).splitlines()
    # The blackhole is not a unicast route: left out.
    assert out == ["10.0.6.1/32 10.0.2.5 v0 12", "10.0.9.0/24 10.0.2.5 v0 3"]


def test_a_route_change_wakes_the_event_socket_and_a_drain_empties_it():
    out = in_fresh_netns("""
        import select
        netlink.configure_interface("v0", 1420, ["10.0.2.4/31"])
        with netlink.route_events() as events:
            print(bool(select.select([events], [], [], 0.2)[0]))
            subprocess.run(["ip", "route", "add", "10.0.6.1", "via", "10.0.2.5"], check=True)
            print(bool(select.select([events], [], [], 2)[0]))
            netlink.drain_events(events)
            print(bool(select.select([events], [], [], 0.2)[0]))
    """).splitlines()
    assert out == ["False", "True", "False"]


def test_the_underlay_address_is_the_default_routes_interfaces_global_one():
    out = in_fresh_netns("""
        netlink.configure_interface("v0", 1500, ["192.0.2.10/24", "fe80::1/64", "2001:db8::10/64"])
        subprocess.run(["ip", "route", "add", "default", "via", "192.0.2.1"], check=True)
        subprocess.run(["ip", "-6", "route", "add", "default", "via", "2001:db8::1"], check=True)
        print(netlink.underlay_addresses())
    """)
    assert out.strip() == str({4: "192.0.2.10", 6: "2001:db8::10"})


def test_parse_routes_reads_ip_json_output():
    # Captured from `ip -json -N -4 route show table 30573` (iproute2 6.1).
    entries = [
        {"dst": "10.7.0.1", "gateway": "10.0.2.5", "dev": "d0", "protocol": "12", "flags": []},
        {"type": "6", "dst": "10.8.0.0/24", "flags": []},
        {"dst": "10.9.0.0/24", "flags": [], "nexthops": [
            {"gateway": "10.0.2.5", "dev": "d0", "weight": 1, "flags": []},
            {"gateway": "10.0.2.7", "dev": "d1", "weight": 2, "flags": []}]},
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
    ]
    assert netlink.parse_routes(entries, 4) == [
        Route(ipaddress.ip_network("10.7.0.1/32"), "10.0.2.5", "d0", 12),
        Route(ipaddress.ip_network("10.9.0.0/24"), "10.0.2.5", "d0", 3),
        Route(ipaddress.ip_network("0.0.0.0/0"), "192.0.2.1", "eth0", 3),
    ]
    assert netlink.parse_routes([{"dst": "fd10::2", "dev": "wgm2", "protocol": "12"}], 6) == [
        Route(ipaddress.ip_network("fd10::2/128"), None, "wgm2", 12)]


def test_parse_routes_takes_type_and_protocol_names_too():
    # Older iproute2 prints some names whatever -N says.
    entries = [{"type": "blackhole", "dst": "10.8.0.0/24"}, {"type": "unicast", "dst": "10.0.6.1", "dev": "wgm6",
                                                             "protocol": "bird"},
               {"dst": "10.0.7.1", "dev": "wgm7", "protocol": "someone-elses"}]
    assert netlink.parse_routes(entries, 4) == [Route(ipaddress.ip_network("10.0.6.1/32"), None, "wgm6", 12),
                                                Route(ipaddress.ip_network("10.0.7.1/32"), None, "wgm7", -1)]


def test_names_longer_than_the_kernel_allows_are_no_interface():
    assert netlink.interface_index("a" * 16) is None and not netlink.interface_is_up("a" * 16)
    assert netlink.interface_index("lo") == 1 and netlink.interface_is_up("lo")
