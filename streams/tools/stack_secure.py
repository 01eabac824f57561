"""``reelstream stack up --secure``: a SASL/SCRAM Kafka node and a Redis with an ACL user.

Beside the plain local stack (never instead of it), on loopback only:

* a second single-node KRaft cluster whose only client listener is
  ``SASL_PLAINTEXT`` with ``SCRAM-SHA-512`` (default port 9094; its controller
  listener on the next port). The broker talks to itself as ``admin``; the
  application user is ``reelstream``. Both users are created when the storage is
  formatted. Authentication only: no authorizer, so an authenticated user may do
  anything (production clusters add ACLs; docs/operations.md, "Exposure").
* a Redis (default port 6380) whose ``default`` user is off and whose only user is
  ``reelstream`` with a password (``+@all -@admin -@dangerous``).

Passwords are generated on the first ``up`` into ``.stack/secure/credentials.json``
(mode 0600, git-ignored, never committed) and reused after; ``.stack/secure/env``
holds the ``REELSTREAM_*`` variables a worker needs to use both
(``set -a; . .stack/secure/env; set +a``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from streams.settings import Settings, stack_dir
from streams.tools.stack import (
    SINGLE_NODE_PROPERTIES,
    Endpoint,
    StackError,
    _log,
    _pid_alive,
    _stop,
    _wait,
    fetch_kafka_jars,
    start_kafka_process,
)

KAFKA_PORT = 9094
REDIS_PORT = 6380
APP_USER = "reelstream"
BROKER_USER = "admin"
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Credentials:
    kafka_password: str
    broker_password: str
    redis_password: str
    kafka_user: str = APP_USER
    redis_user: str = APP_USER

    @classmethod
    def generate(cls) -> Credentials:
        return cls(*(secrets.token_hex(20) for _ in range(3)))

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        if path.exists():
            return cls(**json.loads(path.read_text()))
        creds = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(creds), fh)
        return creds


def client_env(creds: Credentials, kafka_port: int, redis_port: int) -> dict[str, str]:
    """The ``REELSTREAM_*`` variables of a worker or CLI using the secure stack."""
    return {
        "REELSTREAM_BROKER": f"127.0.0.1:{kafka_port}",
        "REELSTREAM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "REELSTREAM_SASL_MECHANISM": MECHANISM,
        "REELSTREAM_SASL_USERNAME": creds.kafka_user,
        "REELSTREAM_SASL_PASSWORD": creds.kafka_password,
        "REELSTREAM_REDIS_URL": (
            f"redis://{creds.redis_user}:{creds.redis_password}@127.0.0.1:{redis_port}/0"
        ),
    }


def client_settings(creds: Credentials, kafka_port: int, redis_port: int, **kw: object) -> Settings:
    env = client_env(creds, kafka_port, redis_port)
    return Settings.from_env(
        broker=env["REELSTREAM_BROKER"],
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=MECHANISM,
        sasl_username=creds.kafka_user,
        sasl_password=creds.kafka_password,
        redis_url=env["REELSTREAM_REDIS_URL"],
        **kw,
    )


def kafka_properties(port: int, controller_port: int, data: Path, creds: Credentials) -> str:
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER_USER}" password="{creds.broker_password}";'
    )
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={jaas}",
            f"log.dirs={data}",
            "num.partitions=4",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            *SINGLE_NODE_PROPERTIES,
            "",
        ]
    )


def redis_conf(port: int, workdir: Path, creds: Credentials) -> str:
    return "\n".join(
        [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {workdir}",
            'save ""',
            "appendonly no",
            "protected-mode yes",
            "user default off",
            f"user {creds.redis_user} on >{creds.redis_password} ~* &* +@all -@admin -@dangerous",
            "",
        ]
    )


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def start_kafka(
    workdir: Path, creds: Credentials, port: int, controller_port: int, heap: str = "1g"
) -> subprocess.Popen:
    """Start (formatting on first use) the SASL/SCRAM node in ``workdir``; wait for its port."""
    if shutil.which("java") is None:
        raise StackError("Java 17+ is required to run Kafka (Debian: openjdk-17-jre-headless)")
    libs = fetch_kafka_jars()
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    props = workdir / "server.properties"
    _private(props, kafka_properties(port, controller_port, data, creds))
    users = [(BROKER_USER, creds.broker_password), (creds.kafka_user, creds.kafka_password)]
    proc = start_kafka_process(workdir, libs, props, data, users, heap=heap)
    ep = Endpoint("127.0.0.1", port)

    def ready() -> bool:
        if proc.poll() is not None:
            raise StackError(f"secure Kafka exited with {proc.returncode}; see {workdir}/logs")
        return ep.answers()

    _wait(ready, f"secure Kafka on 127.0.0.1:{port}", 90, workdir / "logs" / "server.log")
    return proc


def start_redis(workdir: Path, creds: Credentials, port: int) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    if exe is None:
        raise StackError("redis-server not found: install Debian's redis-server package")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "redis.conf"
    _private(conf, redis_conf(port, workdir, creds))
    out = open(workdir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [exe, str(conf)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    out.close()

    def ready() -> bool:
        import redis

        if proc.poll() is not None:
            raise StackError(f"secure Redis exited with {proc.returncode}; see {workdir}")
        try:
            return bool(
                redis.Redis(
                    host="127.0.0.1",
                    port=port,
                    username=creds.redis_user,
                    password=creds.redis_password,
                    socket_timeout=1,
                ).ping()
            )
        except redis.RedisError:
            return False

    _wait(ready, f"secure Redis on 127.0.0.1:{port}", 30, workdir / "redis.log")
    return proc


def _dir() -> Path:
    return stack_dir() / "secure"


def up(kafka_port: int = KAFKA_PORT, redis_port: int = REDIS_PORT) -> dict[str, str]:
    """Start what is not running yet; write ``.stack/secure/env``; check both with the app user."""
    from streams.adapters.kafka_admin import ensure_topics

    sdir = _dir()
    creds = Credentials.load_or_create(sdir / "credentials.json")
    k_pid, r_pid = sdir / "kafka" / "kafka.pid", sdir / "redis" / "redis.pid"
    if _pid_alive(k_pid):
        _log(f"secure Kafka already running (pid {k_pid.read_text().strip()})")
    elif Endpoint("127.0.0.1", kafka_port).answers():
        raise StackError(f"port {kafka_port} is taken by something else")
    else:
        _log(f"starting Kafka with SASL/SCRAM on 127.0.0.1:{kafka_port}")
        proc = start_kafka(sdir / "kafka", creds, kafka_port, kafka_port + 1)
        k_pid.write_text(str(proc.pid))
    if _pid_alive(r_pid):
        _log(f"secure Redis already running (pid {r_pid.read_text().strip()})")
    elif Endpoint("127.0.0.1", redis_port).answers():
        raise StackError(f"port {redis_port} is taken by something else")
    else:
        _log(f"starting Redis with an ACL user on 127.0.0.1:{redis_port}")
        proc = start_redis(sdir / "redis", creds, redis_port)
        r_pid.write_text(str(proc.pid))
    env = client_env(creds, kafka_port, redis_port)
    _private(sdir / "env", "".join(f"{k}={v}\n" for k, v in env.items()))
    created = ensure_topics(client_settings(creds, kafka_port, redis_port))  # authenticates
    _log(f"secure topics ready ({len(created)} created) as {creds.kafka_user!r} via SCRAM")
    _log(f"worker settings: set -a; . {sdir / 'env'}; set +a")
    return env


def down() -> None:
    _log(_stop(_dir() / "kafka" / "kafka.pid", "secure Kafka"))
    _log(_stop(_dir() / "redis" / "redis.pid", "secure Redis"))
