"""The local development stack without Docker: Kafka 4 (KRaft) from Maven Central, Redis.

``reelstream stack up`` is idempotent: it reuses a broker or Redis that already
answers, starts only what is missing, waits until both answer, and records pid
files so ``stack down`` stops only what it started.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from streams.settings import Settings, stack_dir

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POM = PROJECT_ROOT / "deploy" / "kafka" / "pom.xml"

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="${sys:kafka.logs.dir}/server.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


class StackError(RuntimeError):
    """A stack component could not be installed, started or reached."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def answers(self, timeout: float = 0.5) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                return True
        except OSError:
            return False


def _log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def kafka_endpoint(settings: Settings) -> Endpoint:
    host, _, port = settings.broker.split(",")[0].rpartition(":")
    return Endpoint(host or "127.0.0.1", int(port))


def redis_endpoint(settings: Settings) -> Endpoint:
    url = urlparse(settings.redis_url)
    return Endpoint(url.hostname or "127.0.0.1", url.port or 6379)


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _wait(predicate, what: str, timeout: float, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    hint = f"; see {log_file}" if log_file else ""
    raise StackError(f"{what} did not answer within {timeout:.0f}s{hint}")


# --- Kafka -------------------------------------------------------------------------


def _kafka_dir() -> Path:
    return stack_dir() / "kafka"


def fetch_kafka_jars() -> Path:
    """Resolve the broker's jars with Maven once; re-resolve only when the pom changes."""
    libs = _kafka_dir() / "libs"
    stamp = _kafka_dir() / "libs.sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if libs.is_dir() and stamp.exists() and stamp.read_text() == digest:
        return libs
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is required to fetch Kafka's jars: apt-get install maven")
    _log("fetching Kafka jars from Maven Central (first run only)...")
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"mvn failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    stamp.write_text(digest)
    return libs


# Every local single-node broker (plain and secure): internal topics with one replica,
# and short-lived test groups that do not wait for more members.
SINGLE_NODE_PROPERTIES = (
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "share.coordinator.state.topic.replication.factor=1",
    "share.coordinator.state.topic.min.isr=1",
    "group.initial.rebalance.delay.ms=0",
    "auto.create.topics.enable=true",
    "log.retention.hours=24",
)


def server_properties(settings: Settings, data: Path) -> str:
    ep = kafka_endpoint(settings)
    ctl = ep.port + 1
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{ep.host}:{ctl}",
            f"listeners=PLAINTEXT://{ep.host}:{ep.port},CONTROLLER://{ep.host}:{ctl}",
            f"advertised.listeners=PLAINTEXT://{ep.host}:{ep.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            f"num.partitions={settings.partitions}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            *SINGLE_NODE_PROPERTIES,
            "log.segment.bytes=67108864",
            "",
        ]
    )


def new_cluster_id() -> str:
    """A KRaft cluster id (URL-safe base64 of a UUID) that does not start with '-':
    kafka-storage's argument parser would read such an id as an option (1 start in 64).

    >>> all(not new_cluster_id().startswith("-") for _ in range(2000))
    True
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def start_kafka_process(
    kdir: Path,
    libs: Path,
    props: Path,
    data: Path,
    scram_users: list[tuple[str, str]] | None = None,
    heap: str = "1g",
) -> subprocess.Popen:
    """Format KRaft storage once (with SCRAM-SHA-512 users, if any), then start the broker."""
    logs = kdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (kdir / "log4j2.xml").write_text(LOG4J2_XML)
    java = [
        "java",
        "-cp",
        f"{libs}/*",
        f"-Dkafka.logs.dir={logs}",
        f"-Dlog4j2.configurationFile={kdir / 'log4j2.xml'}",
    ]
    if not (data / "meta.properties").exists():
        cluster_id = new_cluster_id()
        _log(f"formatting KRaft storage in {data}")
        scram: list[str] = []
        for user, password in scram_users or []:
            scram += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        res = subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
                "--ignore-formatted",
                *scram,
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise StackError(f"Kafka storage format failed:\n{res.stdout}\n{res.stderr}")
    out = open(logs / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            *java,
            "-Xms256m",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            "kafka.Kafka",
            str(props),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    return proc


def kafka_up(settings: Settings) -> str:
    ep = kafka_endpoint(settings)
    kdir = _kafka_dir()
    pid_file = kdir / "kafka.pid"
    if _pid_alive(pid_file):
        _wait(ep.answers, f"Kafka on {ep.host}:{ep.port}", 60, kdir / "logs" / "server.log")
        return f"Kafka already running (pid {pid_file.read_text().strip()}) on {ep.host}:{ep.port}"
    if ep.answers():
        return f"Kafka already answers on {ep.host}:{ep.port}: reusing it (not managed here)"
    if shutil.which("java") is None:
        raise StackError("Java 17+ is required to run Kafka (Debian: openjdk-17-jre-headless)")
    libs = fetch_kafka_jars()
    data = kdir / "data"
    logs = kdir / "logs"
    kdir.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    props.write_text(server_properties(settings, data))
    _log(f"starting Kafka on {ep.host}:{ep.port}")
    proc = start_kafka_process(kdir, libs, props, data)
    pid_file.write_text(str(proc.pid))

    def ready() -> bool:
        if proc.poll() is not None:
            raise StackError(f"Kafka exited with {proc.returncode}; see {logs / 'stdout.log'}")
        return ep.answers()

    _wait(ready, f"Kafka on {ep.host}:{ep.port}", 90, logs / "server.log")
    return f"Kafka started (pid {proc.pid}) on {ep.host}:{ep.port}"


# --- Redis -------------------------------------------------------------------------


def _redis_ping(settings: Settings) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(settings.redis_url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _ensure_redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe:
        return exe
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _log("installing Debian's redis-server package")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
        res = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "redis-server"],
            env=env,
            capture_output=True,
            text=True,
        )
        if res.returncode == 0 and shutil.which("redis-server"):
            return shutil.which("redis-server")  # type: ignore[return-value]
        raise StackError(f"apt-get install redis-server failed:\n{res.stderr[-2000:]}")
    raise StackError("redis-server not found: install Debian's redis-server package")


def redis_up(settings: Settings) -> str:
    ep = redis_endpoint(settings)
    rdir = stack_dir() / "redis"
    pid_file = rdir / "redis.pid"
    if _redis_ping(settings):
        owner = "started here" if _pid_alive(pid_file) else "not managed here"
        return f"Redis already answers on {ep.host}:{ep.port} ({owner})"
    if ep.host not in ("127.0.0.1", "localhost", "::1"):
        raise StackError(f"Redis at {settings.redis_url} does not answer; start it there")
    exe = _ensure_redis_server()
    rdir.mkdir(parents=True, exist_ok=True)
    _log(f"starting Redis on {ep.host}:{ep.port}")
    out = open(rdir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(ep.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(rdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pid_file.write_text(str(proc.pid))
    _wait(lambda: _redis_ping(settings), f"Redis on {ep.host}:{ep.port}", 30, rdir / "redis.log")
    return f"Redis started (pid {proc.pid}) on {ep.host}:{ep.port}"


# --- both --------------------------------------------------------------------------


def _stop(pid_file: Path, name: str, timeout: float = 60) -> str:
    pid = _pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return f"{name}: not started here"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid_file):
        time.sleep(0.2)
    if _pid_alive(pid_file):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return f"{name}: stopped (pid {pid})"


def up(settings: Settings) -> None:
    from streams.adapters.kafka_admin import ensure_topics

    _log(redis_up(settings))
    _log(kafka_up(settings))
    created = ensure_topics(settings)
    _log(
        f"topics ready (created: {', '.join(created)})" if created else "topics ready (all existed)"
    )


def down() -> None:
    _log(_stop(_kafka_dir() / "kafka.pid", "Kafka"))
    _log(_stop(stack_dir() / "redis" / "redis.pid", "Redis"))


def status(settings: Settings) -> bool:
    k, r = kafka_endpoint(settings), redis_endpoint(settings)
    k_ok, r_ok = k.answers(), _redis_ping(settings)
    k_pid = _pid_alive(_kafka_dir() / "kafka.pid")
    r_pid = _pid_alive(stack_dir() / "redis" / "redis.pid")
    print(
        f"kafka  {k.host}:{k.port}  {'up' if k_ok else 'down'}"
        f"  {'pid ' + str(k_pid) if k_pid else '(not managed here)'}"
    )
    print(
        f"redis  {r.host}:{r.port}  {'up' if r_ok else 'down'}"
        f"  {'pid ' + str(r_pid) if r_pid else '(not managed here)'}"
    )
    for name, pid_file in (
        ("secure kafka+redis", stack_dir() / "secure" / "kafka" / "kafka.pid"),
        ("prometheus", stack_dir() / "prometheus" / "prometheus.pid"),
    ):
        pid = _pid_alive(pid_file)
        if pid:
            print(f"{name}  pid {pid}  (stack up --{name.split()[0]})")
    print(f"stack dir: {stack_dir()}")
    return k_ok and r_ok


def main(argv: list[str]) -> int:
    """``up | down | status`` and, for ``up``/``down``, ``--secure`` (SASL/SCRAM Kafka and
    Redis with an ACL user: streams/tools/stack_secure.py) and ``--prometheus``
    (streams/tools/stack_prometheus.py); ``down`` stops whatever of those is running."""
    settings = Settings.from_env()
    args = [a for a in argv if not a.startswith("--")]
    flags = {a for a in argv if a.startswith("--")}
    unknown = flags - {"--secure", "--prometheus"}
    cmd = args[0] if args else "status"
    if unknown:
        print(f"unknown stack option(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        if cmd == "up":
            up(settings)
            if "--secure" in flags:
                from streams.tools import stack_secure

                stack_secure.up()
            if "--prometheus" in flags:
                from streams.tools import stack_prometheus

                stack_prometheus.up(settings)
        elif cmd == "down":
            from streams.tools import stack_prometheus, stack_secure

            stack_prometheus.down()
            stack_secure.down()
            down()
        elif cmd == "status":
            return 0 if status(settings) else 1
        else:
            print(f"unknown stack command {cmd!r}: use up | down | status", file=sys.stderr)
            return 2
    except StackError as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    return 0
