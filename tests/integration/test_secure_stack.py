"""The whole pipeline through a SASL/SCRAM-SHA-512 Kafka listener and a Redis ACL user.

The test starts its own secure Kafka node and Redis (streams/tools/stack_secure.py, the
code behind ``reelstream stack up --secure``) on free loopback ports in a temporary
directory, checks that neither lets in a client without the credentials, then runs a
worker with ``REELSTREAM_SECURITY_PROTOCOL=SASL_PLAINTEXT`` and a Redis URL carrying
user and password, and follows events to scores in Redis and on the score topic.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.adapters.kafka_admin import ensure_topics_async
from streams.adapters.producer import EventProducer
from streams.adapters.scrape import scrape
from streams.tools import stack_secure
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import WorkerProcess, read_topic, wait_for
from tests.integration.own_services import free_port

pytestmark = pytest.mark.integration

N_EVENTS = 1500


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("secure-stack")
    creds = stack_secure.Credentials.generate()
    kafka_port, redis_port = free_port(), free_port()
    controller_port = free_port()
    procs = []
    try:
        procs.append(stack_secure.start_redis(workdir / "redis", creds, redis_port))
        procs.append(
            stack_secure.start_kafka(
                workdir / "kafka", creds, kafka_port, controller_port, heap="512m"
            )
        )
        yield {"creds": creds, "kafka_port": kafka_port, "redis_port": redis_port, "dir": workdir}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except Exception:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def secure_settings(secure_stack, tmp_path_factory):
    run = uuid.uuid4().hex[:8]
    s = stack_secure.client_settings(
        secure_stack["creds"], secure_stack["kafka_port"], secure_stack["redis_port"]
    )
    return s.isolated(
        f"sec-{run}",
        partitions=2,
        data_dir=str(tmp_path_factory.mktemp(f"worker-{run}")),
        web_port=free_port(),
    )


async def _admin_lists_topics(**kwargs) -> list[str]:
    admin = AIOKafkaAdminClient(request_timeout_ms=5000, **kwargs)
    try:
        await asyncio.wait_for(admin.start(), 15)
        return list(await asyncio.wait_for(admin.list_topics(), 15))
    finally:
        await admin.close()


async def test_neither_service_lets_in_a_client_without_the_credentials(
    secure_stack, secure_settings
):
    creds = secure_stack["creds"]
    port = secure_stack["kafka_port"]
    bootstrap = f"127.0.0.1:{port}"
    assert await _admin_lists_topics(**secure_settings.kafka_client_kwargs()) is not None
    refused = await asyncio.gather(
        *(
            _admin_lists_topics(bootstrap_servers=bootstrap, **kwargs)
            for kwargs in (
                {"security_protocol": "PLAINTEXT"},
                {
                    "security_protocol": "SASL_PLAINTEXT",
                    "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_plain_username": creds.kafka_user,
                    "sasl_plain_password": "wrong-password",
                },
            )
        ),
        return_exceptions=True,
    )
    assert all(isinstance(e, KafkaError | TimeoutError | OSError) for e in refused), refused
    rport = secure_stack["redis_port"]
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=rport).get("x")  # the default user is off
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(
            host="127.0.0.1", port=rport, username=creds.redis_user, password="wrong"
        ).ping()
    r = redis.Redis.from_url(secure_settings.redis_url)
    assert r.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.flushall()  # -@dangerous
    conf = (secure_stack["dir"] / "kafka" / "server.properties").stat().st_mode & 0o777
    assert conf == 0o600


async def test_events_become_scores_in_redis_through_scram_and_an_acl_user(
    secure_stack, secure_settings, tmp_path
):
    s = secure_settings
    await ensure_topics_async(s)
    sim = Simulation(SimConfig(users=120, titles=100, seed=3))
    events = list(sim.events(limit=N_EVENTS))
    env = {
        "REELSTREAM_SECURITY_PROTOCOL": s.security_protocol,
        "REELSTREAM_SASL_MECHANISM": s.sasl_mechanism,
        "REELSTREAM_SASL_USERNAME": s.sasl_username,
        "REELSTREAM_SASL_PASSWORD": s.sasl_password,
    }
    worker = WorkerProcess(s, tmp_path / "worker.log", **env)
    try:
        async with EventProducer(s) as producer:
            await producer.send_titles(sim.catalog)
            for ev in events:
                await producer.send(ev)
        await wait_for(
            lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= N_EVENTS,
            f"the worker to consume {N_EVENTS} events through SASL/SCRAM",
            timeout=120,
        )
        latest = {r.key.decode(): r.value for r in await read_topic(s, s.scores_topic)}
        assert len(latest) > 20
        r = redis.Redis.from_url(s.redis_url)

        def redis_has_every_user() -> bool:
            keys = [f"{s.key_prefix}:recs:{{{u}}}" for u in latest]
            return r.mget(keys) == list(latest.values())

        await wait_for(redis_has_every_user, "Redis (ACL user) to hold every user's scores", 30)
        sample = orjson.loads(next(iter(latest.values())))
        assert sample["items"] and sample["model_version"]
        page = worker.metrics()
        # The first-start rebuild (Lua script, SCAN-free) runs under the ACL user's rights.
        await wait_for(
            lambda: scrape(worker.port).value("reelstream_redis_rebuilds_total", outcome="done"),
            "the worker's first-start rebuild of the new Redis",
            timeout=30,
        )
        assert r.exists(f"{s.key_prefix}:epoch")
        assert page.get("reelstream_redis_errors_total", 0) == 0
        assert page.get("reelstream_kafka_send_errors_total", 0) == 0
        assert s.sasl_password not in worker.log_path.read_text(errors="replace")
    finally:
        assert worker.stop() in (0, -15), worker.tail()
