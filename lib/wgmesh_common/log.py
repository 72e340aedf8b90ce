"""Logging to the journal with structured fields; stderr where there is none.

The journal is wgmesh's event bus: every event carries WGMESH_EVENT= (and
WGMESH_LINK=, WGMESH_PEER= where they apply) so the notifier, and a person
with `journalctl WGMESH_EVENT=link-down`, can select them.

Built on the standard `logging` module: wgmesh's records go to the logger
"wgmesh", and one handler on the root logger writes every record (ours and
those of the libraries underneath) to the journal through python3-systemd's
JournalHandler, the WGMESH_* fields passed as `extra=`, or to stderr as
`PROGRAM: LEVEL: message [field=value ...]`.
"""

import logging
import os
import sys
import syslog

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": NOTICE,
           "warning": logging.WARNING, "error": logging.ERROR}

_logger = logging.getLogger("wgmesh")
_identifier = os.path.basename(sys.argv[0]) or "wgmesh"
_verbose = False
# Where there is no journal, a command's routine events would only clutter
# its terminal; daemons lower this so their stderr log is complete.
_daemon = False
_handler: logging.Handler | None = None
JOURNAL_SOCKET = "/run/systemd/journal/socket"


def _journal_available() -> bool:
    return os.path.exists(JOURNAL_SOCKET) and os.environ.get("WGMESH_LOG") != "stderr"


def _fields(record: logging.LogRecord) -> dict[str, str]:
    return {k: v for k, v in vars(record).items() if k.startswith("WGMESH_")}


def _stderr_threshold() -> int:
    if _verbose:
        return logging.DEBUG
    return logging.INFO if _daemon or os.environ.get("WGMESH_LOG") == "stderr" else logging.WARNING


def _to_stderr(record: logging.LogRecord) -> None:
    if record.levelno < _stderr_threshold():
        return
    details = " ".join(f"{k.removeprefix('WGMESH_').lower()}={v}" for k, v in sorted(_fields(record).items()))
    print(f"{_identifier}: {record.levelname.lower()}: {record.getMessage()}{' [' + details + ']' if details else ''}",
          file=sys.stderr, flush=True)


def _journal_handler() -> logging.Handler | None:
    try:
        # Imported here: a machine without python3-systemd still logs, to stderr.
        from systemd import journal
    except ImportError:
        return None

    class WgmeshJournalHandler(journal.JournalHandler):
        @staticmethod
        def map_priority(levelno: int) -> int:
            return syslog.LOG_NOTICE if levelno == NOTICE else journal.JournalHandler.map_priority(levelno)

        def handleError(self, record: logging.LogRecord) -> None:
            # The journal went away (or refused the entry): the line still
            # goes somewhere a person can read it.
            _to_stderr(record)

    return WgmeshJournalHandler(SYSLOG_IDENTIFIER=_identifier)


class _Handler(logging.Handler):
    """The journal where there is one, else stderr; decided per record, as
    WGMESH_LOG=stderr (tests, a person debugging) may be set at any time."""

    def __init__(self) -> None:
        super().__init__()
        self.journal = _journal_handler()
        self.addFilter(_pyroute2_when_verbose)

    def emit(self, record: logging.LogRecord) -> None:
        if self.journal is not None and _journal_available():
            self.journal.emit(record)
        else:
            _to_stderr(record)


def _pyroute2_when_verbose(record: logging.LogRecord) -> bool:
    # pyroute2 logs answers as errors, some on the root logger (a missing
    # generic netlink family is how the kernel says it has no WireGuard
    # module): its lines are debug output here, shown with --verbose.
    if record.name.startswith("pyroute2") or f"{os.sep}pyroute2{os.sep}" in record.pathname:
        return _verbose
    return True


def _install() -> None:
    global _handler
    if _handler is None:
        _handler = _Handler()
        logging.getLogger().addHandler(_handler)
    _logger.setLevel(logging.DEBUG if _verbose else logging.INFO)
    if _verbose:
        logging.getLogger().setLevel(logging.DEBUG)


def configure(*, verbose: bool | None = None, daemon: bool | None = None) -> None:
    """verbose: debug lines too (every program's --verbose); daemon: info
    lines on stderr where there is no journal, for a complete log."""
    global _verbose, _daemon
    if verbose is not None:
        _verbose = verbose
    if daemon is not None:
        _daemon = daemon
    _install()


def _emit(name: str | None, message: str, level: str, fields: dict) -> None:
    extra = {f"WGMESH_{k.upper()}": str(v) for k, v in fields.items() if v is not None}
    if name:
        extra["WGMESH_EVENT"] = name
    # stacklevel 3: the journal's CODE_FILE/CODE_LINE name the caller of
    # event/info/..., not this module.
    _logger.log(_LEVELS[level], message, extra=extra, stacklevel=3)


def event(name: str | None, message: str, level: str = "info", **fields: object) -> None:
    """Log one message; with a name it is an event others can select on.
    Field names are upper-cased and prefixed WGMESH_."""
    _emit(name, message, level, fields)


def debug(message: str, **fields: object) -> None:
    _emit(None, message, "debug", fields)


def info(message: str, **fields: object) -> None:
    _emit(None, message, "info", fields)


def warning(message: str, **fields: object) -> None:
    _emit(None, message, "warning", fields)


def error(message: str, **fields: object) -> None:
    _emit(None, message, "error", fields)


# At import, before any library logs: without a handler on the root logger,
# Python prints a library's warnings bare on stderr (pyroute2's included).
_install()
