"""Reading HTTP from a socket with a whole-message deadline and a byte budget.

A socket timeout bounds each recv, and every byte that arrives starts it
anew: a peer that trickles a byte a second holds the reader for as long as
it likes. Here each recv gets only what is left of one deadline, and the
bytes read are counted against one budget, so a message costs at most that
time and that memory. The join-server reads requests and the join client
reads answers through it.
"""

import io
import math
import socket
import time


class DeadlinePassed(Exception):
    """The message was not complete by its deadline."""


class SizeLimitExceeded(Exception):
    """The message is larger than its byte budget."""


class BoundedReader(io.RawIOBase):
    """A raw reader over a socket; wrap it in io.BufferedReader."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        # The socket's own raw stream: like any makefile() it keeps the
        # socket open until it is closed itself, which http.client counts
        # on when it closes a connection whose answer is still being read.
        self._stream = sock.makefile("rb", buffering=0)
        self.deadline = math.inf
        self.budget = math.inf
        self.received = 0

    def start(self, seconds: float, budget: float) -> None:
        """Begin a new message: it must arrive within seconds, in at most budget bytes."""
        self.deadline = time.monotonic() + seconds
        self.budget = budget
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.received >= self.budget:
            raise SizeLimitExceeded(f"more than {self.budget} bytes")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlinePassed()
        self.sock.settimeout(remaining)
        view = memoryview(buffer)
        if self.budget - self.received < len(view):
            view = view[:int(self.budget - self.received)]
        try:
            count = self._stream.readinto(view)
        except TimeoutError:
            raise DeadlinePassed() from None
        self.received += count or 0
        return count

    def close(self) -> None:
        self._stream.close()
        super().close()
