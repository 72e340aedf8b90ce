"""External commands: one runner that logs what it runs; pid files and
detached daemons, for running without a service manager."""

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from . import log
from .tomlio import write_atomic


def run(argv: list[str], **options) -> subprocess.CompletedProcess:
    """subprocess.run (options as there, check=False unless given), logged
    at debug level, so --verbose shows every command a program runs. Only
    the command line is logged, never its input (keys travel there)."""
    log.debug(f"running {shlex.join(argv)}")
    options.setdefault("check", False)
    result = subprocess.run(argv, **options)  # noqa: PLW1510 - check is in options
    if result.returncode:
        log.debug(f"{argv[0]} exited with status {result.returncode}")
    return result


def read_pid(path: Path) -> int | None:
    """The pid in path if that process is still alive, else None."""
    try:
        pid = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        # A process this one started and that has exited is a zombie until
        # reaped, and a zombie still answers kill(pid, 0).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def spawn_daemon(argv: list[str], pid_file: Path, log_file: Path, env: dict | None = None) -> subprocess.Popen:
    """Start argv in its own session, output appended to log_file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log.debug(f"starting {shlex.join(argv)}, output to {log_file}")
    with open(log_file, "ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True, env=env)
    write_atomic(pid_file, f"{process.pid}\n".encode())
    return process


def stop_daemon(pid_file: Path, timeout: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after timeout; True when something was running."""
    pid = read_pid(pid_file)
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and read_pid(pid_file):
            time.sleep(0.05)
        if read_pid(pid_file):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    Path(pid_file).unlink(missing_ok=True)
    return pid is not None
