"""netem for the lab, in user space (the machine has no sch_netem).

Runs inside the WAN namespace and owns a TUN device. Policy routing sends
the packets of each impaired pair of nodes into the TUN (`ip rule add iif
n<A> to <B's underlay> lookup <table>`); this process holds each packet for
the pair's delay (plus jitter), drops the pair's share of loss, and writes
it back, after which the main table forwards it as usual (its iif is now the
TUN, so the rule does not match twice).

The impairments live in a JSON file, {"A>B": {"delay": ms, "jitter": ms,
"loss": 0..1}}, re-read whenever it changes, so tests change them while
traffic flows.

    python3 -m tests.lab.delay --tun NAME --control FILE --seed N   (inside the WAN netns)
"""

import argparse
import fcntl
import heapq
import ipaddress
import json
import os
import random
import select
import signal
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


@dataclass(frozen=True)
class Impairment:
    delay: float = 0.0  # ms, one way
    jitter: float = 0.0  # ms, standard deviation
    loss: float = 0.0  # 0..1

    def hold(self, rng: random.Random) -> float | None:
        """Seconds to hold one packet, None to drop it."""
        if self.loss and rng.random() < self.loss:
            return None
        spread = rng.gauss(0.0, self.jitter) if self.jitter else 0.0
        return max(0.0, self.delay + spread) / 1000.0


def node_of(address) -> int | None:
    """The lab node an underlay address belongs to (198.18.N.x, 2001:db8:N::x)."""
    if address.version == 4:
        packed = address.packed
        return packed[2] if packed[:2] == bytes((198, 18)) else None
    if address in ipaddress.IPv6Network("2001:db8::/32"):
        # The node id is written in decimal inside the third group.
        group = format(int.from_bytes(address.packed[4:6], "big"), "x")
        return int(group) if group.isdigit() else None
    return None


def endpoints(packet: bytes) -> tuple[int | None, int | None]:
    """(source node, destination node) of a raw IPv4/IPv6 packet."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        return node_of(ipaddress.IPv4Address(packet[12:16])), node_of(ipaddress.IPv4Address(packet[16:20]))
    if version == 6 and len(packet) >= 40:
        return node_of(ipaddress.IPv6Address(packet[8:24])), node_of(ipaddress.IPv6Address(packet[24:40]))
    return None, None


def parse_control(data: dict) -> dict[tuple[int, int], Impairment]:
    table = {}
    for pair, values in data.items():
        source, destination = (int(x) for x in pair.split(">"))
        table[(source, destination)] = Impairment(float(values.get("delay", 0)), float(values.get("jitter", 0)),
                                                  float(values.get("loss", 0)))
    return table


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def serve(tun: str, control: Path, ready: Path | None, seed: int) -> None:  # noqa: C901 - the one packet loop
    fd = open_tun(tun)
    rng = random.Random(seed)
    table, seen = {}, None
    queue: list[tuple[float, int, bytes]] = []
    sequence = 0  # keeps equal due times in arrival order
    if ready:
        ready.write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    next_check = 0.0
    while True:
        now = time.monotonic()
        if now >= next_check:
            next_check = now + 0.1
            try:
                stamp = control.stat().st_mtime_ns
                if stamp != seen:
                    table, seen = parse_control(json.loads(control.read_text() or "{}")), stamp
            except (OSError, ValueError):
                pass
        while queue and queue[0][0] <= now:
            _, _, packet = heapq.heappop(queue)
            try:
                os.write(fd, packet)
            except OSError:
                pass
        timeout = min(0.1, max(0.0, queue[0][0] - now)) if queue else 0.1
        readable, _, _ = select.select([fd], [], [], timeout)
        if not readable:
            continue
        while True:
            try:
                packet = os.read(fd, 65535)
            except BlockingIOError:
                break
            hold = table.get(endpoints(packet), Impairment()).hold(rng)
            if hold is None:
                continue
            sequence += 1
            heapq.heappush(queue, (time.monotonic() + hold, sequence, packet))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tun", required=True)
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--ready", type=Path, help="written with this process's pid once the TUN exists")
    parser.add_argument("--seed", type=int, required=True, help="of the random loss and jitter, for repeatable runs")
    args = parser.parse_args()
    serve(args.tun, args.control, args.ready, args.seed)


if __name__ == "__main__":
    main()
