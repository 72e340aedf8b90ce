"""Link quality probes and the probe files, /run/wgmesh/probe/NAME.toml.

This module owns the probe files: one per link, holding its last rounds
(the window the cost-writer decides on) and a summary of the newest one.
They live under /run, so a restart of any service keeps them and a reboot
starts from fresh measurements.

icmplib 2.1.1 (Debian's) reports only min/avg/max per host, so samples are
taken one echo at a time on its ICMP sockets. A round over many links runs
in one thread: every link's echoes go out interleaved, each link on a
socket of its own, and the replies are matched by (id, sequence), so 200
links cost little more CPU than their packets.
"""

import errno
import ipaddress
import math
import random
import selectors
import socket
import statistics
import struct
import time
from dataclasses import asdict, dataclass

from . import linkfile
from .errors import ConfigError, WgmeshError
from .fieldtypes import has_type
from .paths import Paths
from .quality import Round
from .tomlio import read_toml, remove, write_atomic, write_toml

RECEIVE_BUFFER = 4 << 20
SOL_RAW, ICMP_FILTER, ICMP_ECHOREPLY = 255, 1, 0  # linux/icmp.h
MAX_RTT_MS = 60_000  # far beyond any echo timeout


@dataclass(frozen=True)
class ProbeResult:
    """The summary of one round of one link."""
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
    jitter = Round(when, sent, tuple(rtts)).jitter
    return ProbeResult(
        link=link, peer=peer, time=when, sent=sent, received=len(rtts), loss=round(loss, 2),
        rtt_min=round(min(rtts), 3) if rtts else None,
        rtt_avg=round(statistics.fmean(rtts), 3) if rtts else None,
        rtt_max=round(max(rtts), 3) if rtts else None,
        jitter=round(jitter, 3) if jitter is not None else None,
    )


def sample_rtts(address: str, count: int, interval: float, timeout: float) -> list[float | None]:
    """count echoes to one address, one after the other (proximity checks)."""
    return sample_many({0: address}, count, interval, timeout)[0]


def sample_many(  # noqa: C901 - one echo loop over shared sockets and counters; split, it would only scatter
        targets: dict[int, str], count: int, spacing: float, timeout: float,
        sources: dict[int, tuple[str, str]] | None = None) -> dict[int, list[float | None]]:
    """count echoes to every target (key -> IPv4 or IPv6 address), sent
    interleaved every `spacing` seconds; one RTT in ms per echo, None where
    no answer came within `timeout`.

    With sources (key -> (local address, interface)), each target's echoes
    leave from that address on a socket of their own, bound to the link's
    interface: a link's echoes from the link's own address, so the answer
    comes back over the link too (from the node's loopback it would come
    back over whatever path the peer routes to this node, and the RTT would
    follow the costs it is meant to set), and only what arrives over the
    link counts (another peer can neither answer for it nor flood it).
    Without sources, one socket per family.

    Every target gets its own random echo id and every round a random first
    sequence number, and a reply counts only from the address it was sent
    to: a peer cannot answer for another link's echoes without guessing 32
    bits it never sees (those echoes travel inside the other link's tunnel)."""
    # icmplib here: only a probe round needs it, not the readers of probe files.
    from icmplib import ICMPRequest, ICMPv4Socket, ICMPv6Socket
    from icmplib.exceptions import ICMPError, ICMPLibError, SocketAddressError, TimeoutExceeded

    addresses = {}
    for key, address in targets.items():
        try:
            addresses[key] = ipaddress.ip_address(address)
        except ValueError:
            pass  # not an address (a peer's answer, say): simply unanswered
    keys = list(addresses)
    chance = random.SystemRandom()
    idents = dict(zip(keys, chance.sample(range(0x10000), len(keys))))
    by_ident = {ident: key for key, ident in idents.items()}
    first_sequence = chance.randrange(0x10000)
    samples: dict[int, list[float | None]] = {key: [None] * count for key in targets}

    def new_socket(version: int, source: str | None, device: str | None = None):
        socket_class = ICMPv6Socket if version == 6 else ICMPv4Socket
        sock = socket_class(address=source, privileged=True)
        if device is not None:
            try:
                sock._sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            except OSError as error:
                sock.close()
                if error.errno == errno.ENODEV:
                    raise SocketAddressError(source) from None
                raise
        if version == 4:
            # Only echo replies reach the socket: the peer's own echo
            # requests come over the same link, and icmplib, which cannot
            # parse them, would sit on the socket until its timeout while
            # every other link's replies wait (and read as jitter).
            sock._sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~(1 << ICMP_ECHOREPLY) & 0xFFFFFFFF))
        if source is None:
            # Every link's replies in one buffer, in bursts: room for them
            # all, or the kernel drops some and a clean link looks lossy.
            # (icmplib has no setter; its socket is _sock.)
            sock._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        return sock

    socket_of = {}
    opened = []
    try:
        for key in list(keys):
            version = addresses[key].version
            if sources is not None:
                try:
                    socket_of[key] = new_socket(version, *sources[key])
                except SocketAddressError:
                    # The link's interface is not there (yet): nothing can
                    # answer over it, and its round says so.
                    keys.remove(key)
                    continue
                opened.append(socket_of[key])
            else:
                shared = next((s for k, s in socket_of.items() if addresses[k].version == version), None)
                socket_of[key] = shared or new_socket(version, None)
                if shared is None:
                    opened.append(socket_of[key])
    except (ICMPLibError, OSError):
        for sock in opened:
            sock.close()
        raise
    selector = selectors.DefaultSelector()
    for sock in opened:
        selector.register(sock._sock, selectors.EVENT_READ, sock)
    # (id, sequence on the wire) -> (the echo's index, when it was sent)
    sent_at: dict[tuple[int, int], tuple[int, float]] = {}
    pending = 0

    def send(index: int) -> None:
        nonlocal pending
        sequence = (first_sequence + index) & 0xFFFF
        for key in keys:
            request = ICMPRequest(destination=targets[key], id=idents[key], sequence=sequence, payload_size=16)
            try:
                socket_of[key].send(request)
                sent_at[(idents[key], sequence)] = (index, request.time)
                pending += 1
            except (ICMPLibError, OSError):
                pass  # an unroutable peer is simply unanswered

    def take(sock) -> None:
        nonlocal pending
        try:
            # Readable: the packet is there, the timeout is never waited.
            reply = sock.receive(None, 0.05)
        except (TimeoutExceeded, ICMPError, ICMPLibError, OSError):
            return
        key = by_ident.get(reply.id)
        echo = sent_at.get((reply.id, reply.sequence))
        if key is None or echo is None or reply.type not in (0, 129) or socket_of[key] is not sock \
                or not _same_address(reply.source, addresses[key]):
            return
        index, started = echo
        if samples[key][index] is None:
            rtt = (reply.time - started) * 1000.0
            if rtt <= timeout * 1000.0:
                samples[key][index] = rtt
                pending -= 1

    # Deadlines on the monotonic clock: a wall clock stepped back must not
    # make the round wait for as long as the step.
    def receive_until(deadline: float) -> None:
        while pending and (left := deadline - time.monotonic()) > 0:
            for selected, _ in selector.select(left):
                take(selected.data)

    try:
        start = time.monotonic()
        for sequence in range(count):
            send(sequence)
            if sequence + 1 < count:
                # Paced even when every reply is in early: a round spans
                # count x spacing, so jitter and loss are measured over
                # time, not over a burst.
                next_send = start + (sequence + 1) * spacing
                receive_until(next_send)
                time.sleep(max(0.0, next_send - time.monotonic()))
        receive_until(time.monotonic() + timeout)
    finally:
        selector.close()
        for sock in opened:
            sock.close()
    return samples


def _same_address(text: str, address) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False


def probe_links(links: list[linkfile.Link], count: int = 20, spacing: float = 0.05,
                timeout: float = 1.0) -> dict[str, tuple[float, list[float | None]]]:
    """One round over every link at once: name -> (start time, samples).
    A socket this node cannot open (no CAP_NET_RAW, no file descriptors)
    is this node's problem, not its peers': WgmeshError, and no round."""
    from icmplib.exceptions import ICMPLibError

    started = time.time()
    targets = {index: link.peer4 for index, link in enumerate(links)}
    sources = {index: (link.local4, link.name) for index, link in enumerate(links)}
    try:
        by_index = sample_many(targets, count, spacing, timeout, sources) if targets else {}
    except (ICMPLibError, OSError) as error:
        raise WgmeshError(f"cannot send echo requests: {error}") from None
    return {link.name: (started, by_index[index]) for index, link in enumerate(links)}


def probe_path(paths: Paths, name: str):
    return paths.probe_dir / f"{name}.toml"


@dataclass(frozen=True)
class ProbeFile:
    """A link's probe file: its window of rounds, newest last."""
    link: str
    peer: int
    rounds: tuple[Round, ...]

    @property
    def latest(self) -> ProbeResult | None:
        if not self.rounds:
            return None
        newest = self.rounds[-1]
        samples = list(newest.rtts) + [None] * (newest.sent - newest.received)
        return summarize(self.link, self.peer, newest.time, samples)


def add_round(previous: ProbeFile | None, link: linkfile.Link, when: float, samples: list[float | None],
              window_rounds: int) -> ProbeFile:
    """The window after one more round (pure)."""
    # A negative RTT is a clock step in the middle of the round, not an answer.
    rtts = tuple(round(s, 2) for s in samples if s is not None and 0 <= s <= MAX_RTT_MS)
    kept = previous.rounds if previous and previous.peer == link.peer_id else ()
    # Rounds dated after this one were made before the clock stepped back.
    kept = tuple(r for r in kept if r.time < when)
    rounds = (*kept, Round(round(when, 3), len(samples), rtts))[-window_rounds:]
    return ProbeFile(link.name, link.peer_id, rounds)


def to_document(probe: ProbeFile) -> dict:
    latest = probe.latest
    document = latest.to_dict() if latest else {"link": probe.link, "peer": probe.peer}
    document["rounds"] = [{"time": r.time, "sent": r.sent, "rtts": list(r.rtts)} for r in probe.rounds]
    return document


def parse(data: dict, source: str) -> ProbeFile:
    try:
        link, peer = data["link"], data["peer"]
        if not isinstance(link, str) or not has_type(peer, int):
            raise ValueError("link must be a name and peer an ID")
        rounds = []
        for entry in data.get("rounds", []):
            when, sent, rtts = entry["time"], entry["sent"], entry.get("rtts", [])
            if not has_type(when, (int, float)) or not has_type(sent, int) or sent < 0:
                raise ValueError("a round needs a time and a count of echoes sent")
            if not isinstance(rtts, list) or len(rtts) > sent or not all(
                    has_type(r, (int, float)) and 0 <= r <= MAX_RTT_MS for r in rtts):
                raise ValueError(f"a round's rtts must be at most `sent` numbers from 0 to {MAX_RTT_MS} ms")
            if not math.isfinite(when):
                raise ValueError("a round's time must be a finite number")
            rounds.append(Round(float(when), sent, tuple(float(r) for r in rtts)))
    except (KeyError, TypeError, ValueError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise ConfigError(f"{source}: not a probe file ({detail})") from None
    return ProbeFile(link, peer, tuple(sorted(rounds, key=lambda r: r.time)))


def read(paths: Paths, name: str) -> ProbeFile | None:
    """A link's probe file; None when there is none. ConfigError when it
    cannot be read as one."""
    path = probe_path(paths, name)
    try:
        data = read_toml(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    return parse(data, str(path))


def write(paths: Paths, probe: ProbeFile) -> None:
    write_toml(probe_path(paths, probe.link), to_document(probe))


def prune(paths: Paths, known_links: list[str]) -> None:
    """Probe files of links that no longer exist go."""
    if paths.probe_dir.is_dir():
        for path in paths.probe_dir.glob("*.toml"):
            if path.stem not in known_links:
                remove(path)


def round_stamp(paths: Paths):
    return paths.probe_round_file


def mark_round(paths: Paths, when: float) -> None:
    """Written once a whole round is on disk: what the cost-writer's path
    unit watches, so a round over 200 links starts it once, not 200 times."""
    write_atomic(round_stamp(paths), f"{when:.3f}\n".encode())


def read_result(paths: Paths, name: str) -> ProbeResult | None:
    """The newest round's summary, or None (no file, or an unreadable one)."""
    try:
        probe = read(paths, name)
    except ConfigError:
        return None
    return probe.latest if probe else None
