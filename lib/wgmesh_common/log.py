"""Logging to the journal with structured fields; stderr where there is none.

The journal is wgmesh's event bus: every event carries WGMESH_EVENT= (and
WGMESH_LINK=, WGMESH_PEER= where they apply) so the notifier, and a person
with `journalctl WGMESH_EVENT=link-down`, can select them.
"""

import os
import sys
import syslog

_PRIORITIES = {"debug": syslog.LOG_DEBUG, "info": syslog.LOG_INFO, "notice": syslog.LOG_NOTICE,
               "warning": syslog.LOG_WARNING, "error": syslog.LOG_ERR}
_identifier = os.path.basename(sys.argv[0]) or "wgmesh"
# Where there is no journal, a command's routine events would only clutter
# its terminal; daemons lower this so their stderr log is complete.
_stderr_threshold = "warning"
_ORDER = ["debug", "info", "notice", "warning", "error"]


def set_stderr_threshold(level: str) -> None:
    global _stderr_threshold
    _stderr_threshold = level


def set_identifier(name: str) -> None:
    global _identifier
    _identifier = name


def _journal_available() -> bool:
    return os.path.exists("/run/systemd/journal/socket") and os.environ.get("WGMESH_LOG") != "stderr"


def event(name: str | None, message: str, level: str = "info", **fields: object) -> None:
    """Log one message; with a name it is an event others can select on.
    Field names are upper-cased and prefixed WGMESH_."""
    extra = {f"WGMESH_{k.upper()}": str(v) for k, v in fields.items() if v is not None}
    if name:
        extra["WGMESH_EVENT"] = name
    if _journal_available():
        try:
            from systemd import journal

            journal.send(message, PRIORITY=_PRIORITIES[level], SYSLOG_IDENTIFIER=_identifier, **extra)
            return
        except (ImportError, OSError):
            pass
    if _ORDER.index(level) < _ORDER.index(_stderr_threshold) and os.environ.get("WGMESH_LOG") != "stderr":
        return
    details = " ".join(f"{k.removeprefix('WGMESH_').lower()}={v}" for k, v in sorted(extra.items()))
    print(f"{_identifier}: {level}: {message}{' [' + details + ']' if details else ''}", file=sys.stderr, flush=True)


def info(message: str, **fields: object) -> None:
    event(None, message, "info", **fields)


def warning(message: str, **fields: object) -> None:
    event(None, message, "warning", **fields)


def error(message: str, **fields: object) -> None:
    event(None, message, "error", **fields)
