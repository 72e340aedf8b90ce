"""Atomic writes, exact modes, and the pipeline formats (TOML, JSON)."""

import io
import json
import os
import tomllib

import pytest

from unit_helpers import file_mode
from wgmesh_common import tomlio
from wgmesh_common.errors import ConfigError


@pytest.fixture
def umask():
    """Set the process umask for one test, restore it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(saved)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
@pytest.mark.parametrize("mode", [tomlio.SECRET_MODE, tomlio.PUBLIC_MODE])
def test_write_atomic_gives_exactly_the_mode_asked(tmp_path, umask, mask, mode):
    umask(mask)
    target = tmp_path / "f"
    tomlio.write_atomic(target, b"data", mode)
    assert file_mode(target) == mode
    assert target.read_bytes() == b"data"


def test_write_atomic_replacing_a_public_file_with_a_secret_narrows_the_mode(tmp_path, umask):
    umask(0)
    target = tmp_path / "k"
    tomlio.write_atomic(target, b"old")
    assert file_mode(target) == 0o644
    tomlio.write_atomic(target, b"secret", tomlio.SECRET_MODE)
    assert file_mode(target) == 0o600


def test_write_atomic_creates_parent_directories_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a" / "b" / "c.toml"
    for i in range(5):
        tomlio.write_atomic(target, f"v{i}".encode())
    assert target.read_text() == "v4"
    assert os.listdir(target.parent) == ["c.toml"]


def test_write_atomic_replaces_the_file_rather_than_rewriting_it(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old content")
    with open(target, "rb") as reader:
        tomlio.write_atomic(target, b"new")
        # A reader that opened the old file still sees all of it, never a mix.
        assert reader.read() == b"old content"
    assert target.read_bytes() == b"new"


def test_write_atomic_writes_large_data_completely(tmp_path):
    data = os.urandom(3 * 1024 * 1024)
    target = tmp_path / "big"
    tomlio.write_atomic(target, data)
    assert target.read_bytes() == data


def test_a_failure_during_the_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "wgmesh.toml"
    target.write_text("old = 1\n")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        tomlio.write_atomic(target, b"new = 2\n")
    monkeypatch.undo()
    assert target.read_text() == "old = 1\n"
    assert os.listdir(tmp_path) == ["wgmesh.toml"]


def test_a_failed_rename_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_text("old")

    def broken_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError):
        tomlio.write_atomic(target, b"new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_an_interrupted_write_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "f"

    def interrupted(fd, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tomlio.write_atomic(target, b"x")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_write_toml_drops_none_and_reads_back(tmp_path):
    target = tmp_path / "x.toml"
    tomlio.write_toml(target, {"a": 1, "b": None, "t": {"c": "d", "e": None}, "l": [{"x": None, "y": 2}]})
    assert tomlio.read_toml(target) == {"a": 1, "t": {"c": "d"}, "l": [{"y": 2}]}
    assert file_mode(target) == 0o644


def test_read_toml_names_the_file_on_bad_toml(tmp_path):
    target = tmp_path / "bad.toml"
    target.write_text("a = = 1\n")
    with pytest.raises(ConfigError) as caught:
        tomlio.read_toml(target)
    assert str(caught.value).startswith(f"{target}: not valid TOML")
    assert "\n" not in str(caught.value)


def test_remove(tmp_path):
    target = tmp_path / "f"
    target.write_text("x")
    assert tomlio.remove(target) is True
    assert not target.exists()
    assert tomlio.remove(target) is False


DOC = {"probe": [{"link": "wgm2", "peer": 2, "loss": 0.0, "rtt_avg": 1.5}], "node": {"id": 4, "unset": None}}
EXPECTED = {"probe": [{"link": "wgm2", "peer": 2, "loss": 0.0, "rtt_avg": 1.5}], "node": {"id": 4}}


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_emit_and_load_stream_round_trip(fmt):
    out = io.StringIO()
    tomlio.emit(DOC, fmt, out)
    text = out.getvalue()
    # The text really is in the format asked for.
    if fmt == "json":
        assert json.loads(text) == EXPECTED
    else:
        assert tomllib.loads(text) == EXPECTED
    assert tomlio.load_stream(io.BytesIO(text.encode()), fmt) == EXPECTED


@pytest.mark.parametrize("fmt, raw, message", [
    ("toml", b"a = \n", "<stdin>: not valid TOML"),
    ("json", b"{nope", "<stdin>: not valid JSON"),
    ("json", b"[1, 2]", "<stdin>: expected a JSON object"),
    ("toml", b"\xff\xfe", "<stdin>: not valid TOML"),
])
def test_load_stream_refuses_bad_input(fmt, raw, message):
    with pytest.raises(ConfigError, match=message):
        tomlio.load_stream(io.BytesIO(raw), fmt)


def test_file_lock_excludes_a_second_holder(tmp_path):
    import threading

    lock = tmp_path / "lock"
    order = []
    inside = threading.Event()
    release = threading.Event()

    def holder():
        with tomlio.file_lock(lock):
            order.append("first-in")
            inside.set()
            release.wait(5)
            order.append("first-out")

    def waiter():
        inside.wait(5)
        with tomlio.file_lock(lock):
            order.append("second-in")

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for t in threads:
        t.start()
    inside.wait(5)
    # Give the waiter every chance to (wrongly) get in while the first holds it.
    threads[1].join(0.2)
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["first-in", "first-out", "second-in"]
