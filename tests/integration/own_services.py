"""Servers a fault test starts, stops and throws away itself: never the shared stack's.

``RedisServer`` runs Debian's redis-server on a free loopback port without persistence,
so a restart comes back empty (the outage issue 11 describes).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None, *extra: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed (Debian's redis-server package)")
        self.exe = exe
        self.dir = workdir
        self.port = port or free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "no",
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not answer in {timeout}s")

    def ping(self, **kwargs: object) -> bool:
        try:
            return bool(self.client(**kwargs).ping())
        except redis.RedisError:
            return False

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kwargs)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _free_port_pair() -> int:
    """A free loopback port whose successor is free too (the KRaft controller listens there)."""
    import socket

    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no pair of free loopback ports")


class KafkaServer:
    """A single-node KRaft broker of this test's own, started from the stack's jars.

    ``stop()`` shuts it down cleanly and ``start()`` brings it back on the same port
    with the same data, as an operator restarting the broker would.
    """

    def __init__(self, workdir: Path) -> None:
        from streams.settings import Settings

        self.dir = workdir
        self.port = _free_port_pair()
        self.settings = Settings.from_env().isolated("own-kafka", broker=self.bootstrap)
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answers(self) -> bool:
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def start(self, timeout: float = 120.0) -> None:
        from streams.tools import stack

        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text(stack.server_properties(self.settings, self.dir / "data"))
        self.proc = stack.start_kafka_process(
            self.dir, stack.fetch_kafka_jars(), props, self.dir / "data", heap="512m"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "logs" / "stdout.log").read_text(errors="replace")
                raise RuntimeError(f"own Kafka exited with {self.proc.returncode}:\n{log[-3000:]}")
            if self.answers():
                return
            time.sleep(0.2)
        raise RuntimeError(f"own Kafka on {self.bootstrap} did not answer in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
