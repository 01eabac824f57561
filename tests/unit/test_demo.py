"""The demo's wait for a ready worker, against a loopback stand-in for /readyz."""

from __future__ import annotations

import http.server
import threading

import orjson

from streams.tools.demo import readyz, wait_ready


class _Worker:
    """The part of a Popen the wait reads."""

    def __init__(self, code: int | None = None) -> None:
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode


def _serve(answers: list[tuple[int, dict]]) -> tuple[http.server.HTTPServer, list[int]]:
    calls: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers[min(len(calls), len(answers) - 1)]
            calls.append(status)
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls


def test_the_demo_sends_traffic_only_once_the_worker_is_ready(capsys):
    waiting = (503, {"status": "not_ready", "checks": {"broker": True, "catalog": False}})
    server, calls = _serve([waiting, waiting, (200, {"status": "ready", "checks": {}})])
    try:
        port = server.server_address[1]
        assert readyz(port) == waiting
        assert wait_ready(port, _Worker(), timeout_s=30)
        assert calls[-1] == 200 and calls.count(503) >= 2
        out = capsys.readouterr().out
        assert "waiting for the worker: catalog" in out and "worker ready after" in out
    finally:
        server.shutdown()


def test_the_wait_ends_when_the_worker_exits_or_never_answers(capsys):
    assert readyz(1) == (0, {})  # nothing listens on port 1
    assert not wait_ready(1, _Worker(code=3), timeout_s=30)
    assert "worker exited with 3" in capsys.readouterr().out
    assert not wait_ready(1, _Worker(), timeout_s=0.6)
