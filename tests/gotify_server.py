"""A gotify-API server for the tests: a real HTTP server that stores each
`POST /message` it gets (title, message, priority, the token it came with).

In-process: GotifyServer(port).start() / .stop() (the same port again after
a stop, so a test can take the server away and bring it back). As a
program (python3 gotify_server.py PORT FILE) it appends each message to
FILE as a JSON line, for a container that has only python3.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if url.path != "/message":
            self.send_error(404)
            return
        token = self.headers.get("X-Gotify-Key") or parse_qs(url.query).get("token", [""])[0]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.send_error(400)
            return
        record = {"token": token, "title": body.get("title"), "message": body.get("message"),
                  "priority": body.get("priority")}
        self.server.store(record)  # type: ignore[attr-defined]
        answer = json.dumps({"id": 1, "appid": 1, **record}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, store):
        super().__init__(address, _Handler)
        self.store = store


class GotifyServer:
    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _store(self, record: dict) -> None:
        with self._lock:
            self.messages.append(record)

    def start(self) -> "GotifyServer":
        self._server = _Server((self.host, self.port), self._store)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]

    def append(record: dict) -> None:
        with open(path, "a") as out:
            out.write(json.dumps(record) + "\n")

    _Server(("0.0.0.0", port), append).serve_forever()


if __name__ == "__main__":
    main()
