"""Limits and error paths that keep the daemons and commands honest."""

import http.server
import threading

import pytest

from wgmesh_common import joinclient
from wgmesh_common.errors import RemoteError, WgmeshError
from wgmesh_common.joinserver import FailureLimiter


def test_failure_limiter_memory_is_bounded():
    limiter = FailureLimiter(allowed=5, window=60)
    limiter.MAX_SOURCES = 100
    for i in range(100):
        limiter.fail(f"2001:db8:{i:x}::1", now=0.0)
    # Long after the window, a new failure sweeps every stale source away.
    limiter.fail("2001:db8:ffff::1", now=1000.0)
    assert list(limiter._failures) == ["2001:db8:ffff::/64"]


@pytest.fixture
def http_404():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(404)
            body = b'{"error": "this node has no link to node 2 over IPv4"}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_remote_errors_carry_the_http_status(http_404):
    with pytest.raises(RemoteError) as caught:
        joinclient.request(http_404, "POST", "/disconnect", {"id": 2})
    assert caught.value.status == 404
    assert "no link to node 2" in str(caught.value)


def test_unreachable_has_no_status():
    with pytest.raises(RemoteError) as caught:
        joinclient.request("http://127.0.0.1:9", "POST", "/connectivity", {"id": 2}, timeout=2)
    assert caught.value.status is None


def test_join_requests_ignore_proxy_settings(http_404, monkeypatch):
    # A proxy that does not exist: used, it would make this unreachable.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with pytest.raises(RemoteError) as caught:
        joinclient.request(http_404, "POST", "/disconnect", {"id": 2})
    assert caught.value.status == 404


def test_missing_systemctl_is_a_one_line_error(monkeypatch, tmp_path):
    from wgmesh_common.supervisor import SystemdSupervisor

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WgmeshError, match="systemctl is missing"):
        SystemdSupervisor._systemctl("daemon-reload")
