"""Atomic file I/O: a reader never sees half a file, a crash never leaves one.

Every writer in wgmesh goes through write_atomic(): temp file in the same
directory, fsync, rename over the target, fsync the directory. Secrets are
created with mode 0600 from the first byte, never chmod-ed afterwards.
"""

import fcntl
import json
import os
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import tomli_w

from .errors import ConfigError

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def write_atomic(path: Path, data: bytes, mode: int = PUBLIC_MODE) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp: unique per writer (threads included), created 0600.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        # The umask may have narrowed the mode; make it exactly what was asked.
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on path, held for the with-block (threads too:
    each call opens its own file description)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, SECRET_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> bool:
    """Remove a file durably; True when it existed."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return False
    fsync_dir(Path(path).parent)
    return True


def dumps(data: dict[str, Any]) -> str:
    return tomli_w.dumps(_drop_none(data))


def write_toml(path: Path, data: dict[str, Any], mode: int = PUBLIC_MODE) -> None:
    write_atomic(path, dumps(data).encode(), mode)


def read_toml(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def load_stream(stream: BinaryIO, fmt: str = "toml", name: str = "<stdin>") -> dict[str, Any]:
    """Read a document from a pipeline (DESIGN principle 3: TOML, JSON on request)."""
    raw = stream.read()
    try:
        if fmt == "json":
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ConfigError(f"{name}: expected a JSON object")
            return data
        return tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{name}: not valid {fmt.upper()}: {error}") from None


def emit(data: dict[str, Any], fmt: str = "toml", stream=None) -> None:
    stream = stream or sys.stdout
    if fmt == "json":
        stream.write(json.dumps(_drop_none(data), indent=2, sort_keys=True) + "\n")
    else:
        stream.write(dumps(data))
    stream.flush()


def _drop_none(value: Any) -> Any:
    # TOML has no null: absent keys stand for "not set".
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
