"""wgmesh's test lab: network-namespace and systemd-nspawn nodes on a routed
WAN. Run `python3 -m tests.lab --help` from the project root."""
