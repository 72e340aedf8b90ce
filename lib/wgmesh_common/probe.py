"""Link quality probes: RTT samples over each link -> loss, latency, jitter.

icmplib 2.1.1 (Debian's) reports only min/avg/max per host, so samples are
taken one echo at a time on its ICMP sockets to get each round trip, from
which jitter is computed. summarize() is the pure part.
"""

import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass

from . import linkfile
from .errors import ConfigError
from .paths import Paths
from .tomlio import read_toml, remove, write_toml


@dataclass(frozen=True)
class ProbeResult:
    link: str
    peer: int
    time: float
    sent: int
    received: int
    loss: float  # percent
    rtt_min: float | None  # milliseconds
    rtt_avg: float | None
    rtt_max: float | None
    jitter: float | None  # mean difference of consecutive RTTs, ms

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(link: str, peer: int, when: float, samples: list[float | None]) -> ProbeResult:
    """samples: one RTT in ms per echo sent, None where no reply came."""
    rtts = [s for s in samples if s is not None]
    sent = len(samples)
    loss = 100.0 * (sent - len(rtts)) / sent if sent else 100.0
    jitter = None
    if len(rtts) >= 2:
        jitter = statistics.fmean(abs(b - a) for a, b in zip(rtts, rtts[1:]))
    return ProbeResult(
        link=link, peer=peer, time=when, sent=sent, received=len(rtts), loss=round(loss, 2),
        rtt_min=round(min(rtts), 3) if rtts else None,
        rtt_avg=round(statistics.fmean(rtts), 3) if rtts else None,
        rtt_max=round(max(rtts), 3) if rtts else None,
        jitter=round(jitter, 3) if jitter is not None else None,
    )


def sample_rtts(address: str, count: int, interval: float, timeout: float, ident: int) -> list[float | None]:
    from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket
    from icmplib.exceptions import ICMPError, ICMPLibError

    socket_class = ICMPv6Socket if ":" in address else ICMPv4Socket
    samples: list[float | None] = []
    with socket_class(privileged=True) as sock:
        for sequence in range(count):
            request = ICMPRequest(destination=address, id=ident, sequence=sequence)
            try:
                sock.send(request)
                reply = sock.receive(request, timeout)
                reply.raise_for_status()
                samples.append((reply.time - request.time) * 1000.0)
            except (ICMPError, ICMPLibError, OSError):
                samples.append(None)
            if sequence + 1 < count:
                time.sleep(interval)
    return samples


def probe_links(links: list[linkfile.Link], count: int = 5, interval: float = 0.2,
                timeout: float = 1.0) -> list[ProbeResult]:
    """Probe every link at once (one thread each): a round takes as long as
    one link's probe, not the sum of them."""
    results: dict[str, ProbeResult] = {}

    def worker(index: int, link: linkfile.Link) -> None:
        ident = (os.getpid() * 31 + index) & 0xFFFF
        started = time.time()
        try:
            samples = sample_rtts(link.peer4, count, interval, timeout, ident)
        except Exception:  # a socket that cannot even open counts as total loss
            samples = [None] * count
        results[link.name] = summarize(link.name, link.peer_id, started, samples)

    threads = [threading.Thread(target=worker, args=(i, l)) for i, l in enumerate(links)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[l.name] for l in links]


def probe_path(paths: Paths, name: str):
    return paths.probe_dir / f"{name}.toml"


def write_results(paths: Paths, results: list[ProbeResult], known_links: list[str]) -> None:
    """One file per link; files of links that no longer exist are removed."""
    for result in results:
        write_toml(probe_path(paths, result.link), result.to_dict())
    if paths.probe_dir.is_dir():
        for path in paths.probe_dir.glob("*.toml"):
            if path.stem not in known_links:
                remove(path)


def read_result(paths: Paths, name: str) -> ProbeResult | None:
    path = probe_path(paths, name)
    if not path.exists():
        return None
    try:
        data = read_toml(path)
        # TOML has no null: a link that answered nothing has no RTT fields.
        for key in ("rtt_min", "rtt_avg", "rtt_max", "jitter"):
            data.setdefault(key, None)
        return ProbeResult(**data)
    except (ConfigError, TypeError):
        return None
