"""Schema 2 on a node 0 installed before it: the overlay devices lose host
part 0 (the IPv4 network address, the IPv6 subnet-router anycast) and get
node 0's new addresses, without the devices being made again."""

def addresses(node, device: str) -> set[str]:
    out = node.run(["ip", "-o", "addr", "show", "dev", device, "scope", "global"]).stdout
    return {line.split()[3] for line in out.splitlines()}


def test_an_upgrade_moves_node_0_off_host_part_0_on_both_overlays(netns_lab):
    node = netns_lab[0]
    node.run(["wgmesh", "init", "0", "--no-start"])
    # The overlay devices as the old version left them.
    for device, vni, local, old in (("wgmvx4", 251, "local 10.0.0.1", "10.0.251.0/24"),
                                    ("wgmvx6", 252, "local fd10::1", "fd10:0:0:fb::/64")):
        node.run(f"ip link add {device} type vxlan id {vni} dstport 4789 {local} nolearning && "
                 f"ip addr add {old} dev {device} && ip link set {device} up")
    before = {d: int(node.run(["cat", f"/sys/class/net/{d}/ifindex"]).stdout) for d in ("wgmvx4", "wgmvx6")}
    (node.state_dir / "schema").write_text("1\n")  # what the old version recorded

    assert node.run(["wgmesh", "migrate"]).stdout.strip() == "applied migrations: 2, 3"
    assert addresses(node, "wgmvx4") == {"10.0.251.1/24"}
    assert addresses(node, "wgmvx6") == {"fd10:0:0:fb::1/64"}
    assert {d: int(node.run(["cat", f"/sys/class/net/{d}/ifindex"]).stdout) for d in before} == before
    # Idempotent: nothing left to do.
    assert "nothing to do" in node.run(["wgmesh", "migrate"]).stdout
