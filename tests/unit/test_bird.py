"""bird2 config rendering (checked by real bird, parse-only) and bird's
control-socket protocol (against a real bird running the rendered config)."""

import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from wgmesh_common import bird
from wgmesh_common.bird import BirdControl, BirdError, OspfInterface, link_cost, parse_ospf_neighbors

BIRD = shutil.which("bird") or ("/usr/sbin/bird" if Path("/usr/sbin/bird").exists() else None)


def bird_accepts(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    return subprocess.run([BIRD, "-p", "-c", str(conf)], capture_output=True, text=True, timeout=30)


needs_bird = pytest.mark.skipif(BIRD is None, reason="bird2 is not installed")

CASES = {
    "no-links": {"node_id": 0, "interfaces": []},
    "several-links": {"node_id": 2, "interfaces": [OspfInterface("wgm0", 100), OspfInterface("wgm4", 250),
                                                 OspfInterface("wgm4v6", 65535), OspfInterface("wgm200", 10100)]},
    "client": {"node_id": 200, "interfaces": [OspfInterface("wgm0", 10100)], "stub_router": True},
    "serving-a-client": {"node_id": 0, "interfaces": [
        OspfInterface("wgm2", 100),
        OspfInterface("wgm200", 10100, ("10.0.200.0/23", "10.0.0.6/31"), ("fd10:0:0:c8::/64", "fd10::6/127"))]},
    "slow-timers": {"node_id": 4, "interfaces": [OspfInterface("wgm2", 1)], "hello": 10, "dead": 40},
    "own-link-nets": {"node_id": 0, "kernel_table": 30573, "interfaces": [
        OspfInterface("wgm2", 100, net4="10.0.0.4/31", net6="fd10::4/127"),
        OspfInterface("wgm200", 10100, ("10.0.200.0/23", "10.0.0.6/31"), ("fd10:0:0:c8::/64", "fd10::6/127"),
                      net4="10.0.0.6/31", net6="fd10::6/127")]},
}


@needs_bird
@pytest.mark.parametrize("case", CASES)
def test_bird_accepts_the_rendered_config(tmp_path, plan, case):
    text = bird.render(plan, **CASES[case])
    result = bird_accepts(tmp_path, text)
    assert result.returncode == 0, result.stderr


@needs_bird
def test_the_parse_check_does_reject_a_broken_config(tmp_path, plan):
    # Proof the check above means something: an out-of-range cost is refused.
    text = bird.render(plan, 2, [OspfInterface("wgm0", 100)]).replace("cost 100;", "cost 70000;")
    result = bird_accepts(tmp_path, text)
    assert result.returncode != 0 and "Cost must be in range" in result.stderr


def _interface_lines(text: str) -> list[str]:
    return re.findall(r'^\t\tinterface "(wgm[^"]*)" \{ (.*) \};$', text, re.MULTILINE)


def test_render_contents(plan):
    text = bird.render(plan, 2, [OspfInterface("wgm4", 250), OspfInterface("wgm0", 100)], hello=2, dead=9)
    assert "router id 10.0.2.1;" in text
    assert "krt_prefsrc = 10.0.2.1;" in text and "krt_prefsrc = fd10:0:0:2::1;" in text
    # The loopback is announced: as a stubnet of its own in OSPFv2, as the
    # stub interface lo in OSPFv3.
    assert "\t\tstubnet 10.0.2.1/32 { cost 0; };\n" in text
    assert 'interface "lo" { stub yes; };' in text
    # One line per link in each of the two OSPF instances, sorted, with its own cost.
    lines = _interface_lines(text)
    assert lines == [
        ("wgm0", "type ptp; cost 100; hello 2; dead 9; retransmit 2;"),
        ("wgm4", "type ptp; cost 250; hello 2; dead 9; retransmit 2;"),
    ] * 2
    assert "stub router" not in text


def test_a_loopback_lo_does_not_hold_is_not_announced(plan):
    # OSPFv2's stubnet does not follow the address (OSPFv3's lo interface
    # does): with wgmesh-node stopped, the mesh must not route to a node
    # that does not answer on its loopback.
    text = bird.render(plan, 2, [OspfInterface("wgm0", 100)], announce_loopback=False)
    assert "stubnet 10.0.2.1/32" not in text
    assert "stubnet 10.0.0.0/16 { summary yes; hidden yes; };" in text


def test_no_interface_of_the_mesh_puts_its_net_in_the_ospfv2_router_lsa(plan):
    # A link's /31 in the router LSA made the LSA that names the new
    # neighbour wait out bird's 5 s between router LSAs; the loopback is
    # announced on its own, so hiding every interface net of the mesh
    # (the summary covers lo's /30 and every link's /31) loses nothing.
    text = bird.render(plan, 2, [OspfInterface("wgm0", 100, net4="10.0.0.4/31", net6="fd10::4/127")])
    v2, v3 = text.split("protocol ospf v3")
    area = v2[v2.index("area 0 {"):]
    assert area.index("stubnet 10.0.0.0/16 { summary yes; hidden yes; };") < area.index("stubnet 10.0.2.1/32 { cost 0; };")
    assert 'interface "lo"' not in v2
    # OSPFv3's router LSA holds no prefixes: nothing to hide there.
    assert "stubnet" not in v3 and 'interface "lo" { stub yes; };' in v3


def test_render_is_deterministic(plan):
    a = bird.render(plan, 2, [OspfInterface("wgm4", 250), OspfInterface("wgm0", 100)])
    b = bird.render(plan, 2, [OspfInterface("wgm0", 100), OspfInterface("wgm4", 250)])
    assert a == b


def test_render_of_a_client_is_a_stub_router_in_both_instances(plan):
    text = bird.render(plan, 200, [OspfInterface("wgm0", 10100)], stub_router=True)
    assert text.count("stub router yes;") == 2
    assert "router id 10.0.200.1;" in text


def test_routes_over_a_client_link_may_lead_only_to_the_client(plan):
    from unit_helpers import make_link
    from wgmesh_common import routing

    client_link = make_link(name="wgm200", peer_id=200, local4="10.0.0.6", peer4="10.0.0.7",
                            local6="fd10::6", peer6="fd10::7")
    assert routing.client_destinations(plan, client_link) == (
        ("10.0.200.0/23", "10.0.0.6/31"), ("fd10:0:0:c8::/64", "fd10::6/127"))
    assert routing.client_destinations(plan, make_link()) == ((), ())
    interfaces = [OspfInterface("wgm2", 100), OspfInterface("wgm200", 10100, *routing.client_destinations(plan, client_link))]
    text = bird.render(plan, 0, interfaces)
    kernel4, kernel6 = re.findall(r"protocol kernel \S+ \{(.*?)\n\}", text, re.DOTALL)
    guard4 = 'if ifname = "wgm200" && net !~ [ 10.0.200.0/23+, 10.0.0.6/31+ ] then reject;'
    guard6 = 'if ifname = "wgm200" && net !~ [ fd10:0:0:c8::/64+, fd10::6/127+ ] then reject;'
    # The guard comes before the accept, in the kernel export of its own family only.
    assert guard4 in kernel4 and kernel4.index(guard4) < kernel4.index("accept") and guard6 not in kernel4
    assert guard6 in kernel6 and kernel6.index(guard6) < kernel6.index("accept")
    assert "wgm2\"" not in kernel4 + kernel6  # links between servers carry anything


def test_own_link_nets_stay_with_the_kernels_connected_routes(plan):
    text = bird.render(plan, 0, CASES["own-link-nets"]["interfaces"])
    kernel4, kernel6 = re.findall(r"protocol kernel \S+ \{(.*?)\n\}", text, re.DOTALL)
    own4 = "if net ~ [ 10.0.0.4/31, 10.0.0.6/31 ] then reject;"
    own6 = "if net ~ [ fd10::4/127, fd10::6/127 ] then reject;"
    assert own4 in kernel4 and kernel4.index(own4) < kernel4.index("accept") and own6 not in kernel4
    assert own6 in kernel6 and kernel6.index(own6) < kernel6.index("accept")
    no_links = "".join(re.findall(r"protocol kernel \S+ \{(.*?)\n\}", bird.render(plan, 0, []), re.DOTALL))
    assert not re.search(r"if net ~ \[ [^+\]]* \] then reject;", no_links)


def test_the_kernel_gets_only_the_mesh_prefixes_each_from_its_owner(plan):
    text = bird.render(plan, 0, CASES["own-link-nets"]["interfaces"])
    kernel4, kernel6 = re.findall(r"protocol kernel \S+ \{(.*?)\n\}", text, re.DOTALL)
    for kernel, gate, overlay, last in (
            # OSPFv2 carries no link nets: an IPv4 /31 is never a route (a
            # member's claim to another pair's link address goes nowhere).
            (kernel4, "if net !~ [ 10.0.0.0/16{30,32} ] then reject;", "if net ~ [ 10.0.251.0/24+ ] then reject;",
             "reject;"),
            (kernel6, "if net !~ [ fd10::/48{126,128} ] then reject;", "if net ~ [ fd10:0:0:fb::/64+ ] then reject;",
             "if net.len != 127 then reject;")):
        lines = [line.strip() for line in kernel.splitlines()]
        body = lines[lines.index("export filter {") + 1:lines.index("accept;")]
        # Externals (a member's static routes) never; then the mesh's own
        # ranges at bounded lengths, not the overlay; the guards; the owners.
        assert body[:3] == ["if source != RTS_OSPF then reject;", gate, overlay]
        owners = [line for line in body if "ospf_router_id" in line]
        assert len(owners) == len(plan.valid_node_ids())
        assert body[-1] == last and body.index(owners[0]) > max(body.index(line) for line in body if "ifname" in line)
    assert ("if net ~ [ 10.0.4.0/30+ ] then { if net ~ [ 10.0.4.0/30, 10.0.4.1/32 ] && "
            "ospf_router_id = 10.0.4.1 then accept; reject; }") in kernel4
    assert ("if net ~ [ fd10:0:0:4::/126+ ] then { if net ~ [ fd10:0:0:4::1/128 ] && "
            "ospf_router_id = 10.0.4.1 then accept; reject; }") in kernel6


@needs_bird
def test_the_kernel_filter_follows_the_mesh_layout(tmp_path):
    import ipaddress

    from wgmesh_common.addressing import MeshPlan

    plan = MeshPlan(ipaddress.IPv4Network("172.20.0.0/16"), 24, ipaddress.IPv6Network("fd20:1::/48"),
                    ipaddress.IPv4Network("172.20.250.0/24"))
    text = bird.render(plan, 7, [OspfInterface("wgm3", 100, net4="172.20.7.4/31", net6="fd20:1:0:7::4/127")])
    assert "if net !~ [ 172.20.0.0/16{30,32} ] then reject;" in text
    assert "if net ~ [ 172.20.250.0/24+ ] then reject;" in text
    assert "if net ~ [ fd20:1:0:fa::/64+ ] then reject;" in text
    assert "ospf_router_id = 172.20.3.1 then accept;" in text
    result = bird_accepts(tmp_path, text)
    assert result.returncode == 0, result.stderr


def test_routes_go_to_the_mesh_table_of_its_own(plan):
    text = bird.render(plan, 0, [OspfInterface("wgm2", 100)], kernel_table=30573)
    kernel4, kernel6 = re.findall(r"protocol kernel \S+ \{(.*?)\n\}", text, re.DOTALL)
    assert "kernel table 30573;" in kernel4 and "kernel table 30573;" in kernel6


@pytest.mark.parametrize("cost, clamped", [(0, 1), (-5, 1), (70000, 65535), (65535, 65535), (1, 1)])
def test_render_clamps_costs(plan, cost, clamped):
    text = bird.render(plan, 0, [OspfInterface("wgm2", cost)])
    assert _interface_lines(text)[0] == ("wgm2", f"type ptp; cost {clamped}; hello 1; dead 4; retransmit 2;")


@pytest.mark.parametrize("base, peer_client, self_client, cost", [
    (100, False, False, 100),
    (100, True, False, 10100),
    (100, False, True, 10100),
    (100, True, True, 10100),
    (60000, True, False, 65535),
    (65535, False, False, 65535),
    (0, False, False, 1),
])
def test_link_cost(base, peer_client, self_client, cost):
    assert link_cost(base, peer_client, self_client) == cost


SAMPLE = """\
wgmesh4:
Router ID   	Pri	     State     	DTime	Interface  Router IP
10.0.2.1    	  1	Full/PtP  	 3.109	wgm2       10.0.0.5
"""


def test_parse_ospf_neighbors_on_real_output():
    assert parse_ospf_neighbors(SAMPLE) == [{"router_id": "10.0.2.1", "state": "Full", "interface": "wgm2"}]


def test_parse_ospf_neighbors_several_rows_and_states():
    text = SAMPLE + "10.0.4.1    \t  1\tInit/PtP  \t 3.900\twgm4v6     10.0.0.7\n"
    rows = parse_ospf_neighbors(text)
    assert [(r["router_id"], r["state"], r["interface"]) for r in rows] == [
        ("10.0.2.1", "Full", "wgm2"), ("10.0.4.1", "Init", "wgm4v6")]


def test_parse_ospf_neighbors_of_nothing():
    assert parse_ospf_neighbors("wgmesh4:\nRouter ID   \tPri\t     State     \tDTime\tInterface  Router IP\n") == []
    assert parse_ospf_neighbors("") == []


# ----------------------------------------------------------- control socket

class RealBird:
    """bird2 itself, running our rendered config in a network namespace of
    its own (so its kernel protocols touch nothing of this machine)."""

    def __init__(self, config_text: str):
        self.directory = Path(tempfile.mkdtemp(prefix="wgb"))  # short: sun_path is 108 bytes
        self.path = self.directory / "bird.ctl"
        self.config = self.directory / "bird.conf"
        self.config.write_text(config_text)
        self.process = subprocess.Popen(
            ["unshare", "--net", BIRD, "-f", "-c", str(self.config), "-s", str(self.path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        control = BirdControl(self.path, timeout=5)
        for _ in range(100):
            if control.alive():
                return
            time.sleep(0.05)
        self.close()
        raise RuntimeError("bird did not start")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


needs_root_bird = pytest.mark.skipif(BIRD is None or os.geteuid() != 0 or not shutil.which("unshare"),
                                     reason="needs bird2, root and unshare (tests/run has all three)")


@pytest.fixture
def real_bird(plan):
    started = RealBird(bird.render(plan, 0, [OspfInterface("wgm2", 100)]))
    yield started
    started.close()


@needs_root_bird
def test_configure_of_a_good_config_reconfigures(real_bird, plan):
    control = BirdControl(real_bird.path, timeout=5)
    real_bird.config.write_text(bird.render(plan, 0, [OspfInterface("wgm2", 250)]))
    assert control.configure().splitlines()[-1] == "Reconfigured"
    assert control.configure().splitlines()[-1] in ("Reconfigured", "Reconfiguration in progress")


@needs_root_bird
def test_configure_of_a_broken_config_raises_with_birds_reason_and_keeps_running(real_bird):
    control = BirdControl(real_bird.path, timeout=5)
    real_bird.config.write_text(real_bird.config.read_text().replace("cost 100;", "cost 70000;"))
    with pytest.raises(BirdError) as caught:
        control.configure()
    message = str(caught.value)
    assert message.startswith("bird refused the new config: ") and "Cost must be in range" in message
    assert len(message.splitlines()) == 1
    assert control.alive()


@needs_root_bird
def test_command_reads_a_multi_line_reply(real_bird):
    control = BirdControl(real_bird.path, timeout=5)
    code, text = control.command("show protocols")
    assert code == 0
    names = {line.split()[0] for line in text.splitlines()[1:] if line.strip()}
    assert {"device1", "wgmesh_kernel4", "wgmesh_kernel6", "wgmesh4", "wgmesh6"} <= names
    assert control.ospf_neighbors("wgmesh4") == []  # no neighbour in an empty namespace


@needs_root_bird
def test_alive(real_bird, tmp_path):
    assert BirdControl(real_bird.path, timeout=5).alive() is True
    assert BirdControl(tmp_path / "missing.ctl", timeout=1).alive() is False


def test_no_socket_is_a_one_line_error(tmp_path):
    with pytest.raises(BirdError, match="bird is not running"):
        BirdControl(tmp_path / "none.ctl", timeout=1).configure()


def test_a_reply_cut_short_is_an_error_not_a_success():
    # bird dies in the middle of `configure`: only a continuation line came.
    stream = io.StringIO("0002-Reading configuration from /run/wgmesh/bird.conf\n")
    with pytest.raises(bird.BirdError, match="in the middle of a reply"):
        BirdControl._read_reply(stream)
