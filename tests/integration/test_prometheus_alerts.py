"""A real Prometheus (Debian's) scrapes a worker with deploy/prometheus's rules loaded,
and ReelstreamPoisonRecords fires on a poison record, then resolves, through its HTTP API.

The rules are the deploy file with every window and ``for`` sixty times shorter
(streams/tools/stack_prometheus.py, ``scaled_rules``): the expressions are the ones
production evaluates, on a timescale a test can wait for.
"""

from __future__ import annotations

import time
import urllib.parse

import pytest

from streams.adapters.producer import EventProducer
from streams.tools import stack_prometheus
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import wait_for
from tests.integration.own_services import free_port

pytestmark = pytest.mark.integration

ALERT = "ReelstreamPoisonRecords"


@pytest.fixture(scope="module")
def worker(run_settings, start_worker):
    return start_worker()


@pytest.fixture(scope="module")
def prometheus(worker, tmp_path_factory):
    port = free_port()
    proc = stack_prometheus.start(
        tmp_path_factory.mktemp("prometheus"),
        port,
        [f"127.0.0.1:{worker.port}"],
        rules_text=stack_prometheus.scaled_rules(stack_prometheus.RULES.read_text()),
        scrape_s=1,
        eval_s=1,
    )
    yield port
    proc.terminate()
    proc.wait(30)


def query(port: int, expr: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": expr})
    return stack_prometheus.api(port, f"/api/v1/query?{q}")["data"]["result"]


def poison_alerts(port: int, topic: str) -> list[dict]:
    alerts = stack_prometheus.api(port, "/api/v1/alerts")["data"]["alerts"]
    return [
        a for a in alerts if a["labels"]["alertname"] == ALERT and a["labels"].get("topic") == topic
    ]


async def test_the_poison_records_alert_fires_and_resolves(run_settings, worker, prometheus):
    port = prometheus
    rules = stack_prometheus.api(port, "/api/v1/rules")["data"]["groups"]
    names = {r["name"] for g in rules for r in g["rules"]}
    assert {ALERT, "ReelstreamRedisErrors", "ReelstreamWorkerDown"} <= names
    sim = Simulation(SimConfig(users=30, titles=40, seed=9))
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
        for ev in sim.events(limit=200):
            await producer.send(ev)
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= 200,
        "the worker to consume the events",
        timeout=120,
    )
    topic = run_settings.events_topic
    # Scraped, and the alerted series already there at 0 (a series born at 1 would not fire).
    await wait_for(
        lambda: (
            query(port, f'up{{job="{stack_prometheus.JOB}"}} == 1')
            and query(
                port,
                f'reelstream_dead_letters_total{{topic="{topic}",reason="schema_registry_framed"}}'
                " == 0",
            )
        ),
        "Prometheus to scrape the worker's zero poison series",
        timeout=30,
    )
    assert poison_alerts(port, topic) == []
    framed = b"\x00\x00\x00\x00\x07" + b'{"avro": "payload"}'
    async with EventProducer(run_settings) as producer:
        await producer.send_raw(topic, b"u000001", framed)
    sent = time.monotonic()

    def firing() -> list[dict]:
        return [a for a in poison_alerts(port, topic) if a["state"] == "firing"]

    fired = await wait_for(firing, f"{ALERT} to fire", timeout=30)
    fired_after = time.monotonic() - sent
    assert fired[0]["labels"]["reason"] == "schema_registry_framed"
    assert fired[0]["labels"]["severity"] == "page"
    assert fired[0]["annotations"]["summary"] == (
        f"{topic}: records dead-lettered as schema_registry_framed"
    )
    await wait_for(lambda: poison_alerts(port, topic) == [], f"{ALERT} to resolve", timeout=60)
    resolved_after = time.monotonic() - sent
    # The firing is in Prometheus's own history (ALERTS series), not only in our polling.
    hist = query(port, f'max_over_time(ALERTS{{alertname="{ALERT}",alertstate="firing"}}[5m])')
    assert hist and hist[0]["metric"]["topic"] == topic
    print(f"\n{ALERT}: fired {fired_after:.1f}s after the record, resolved {resolved_after:.1f}s")
