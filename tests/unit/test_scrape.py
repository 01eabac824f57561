"""The one /metrics reader (streams/adapters/scrape.py) on pages prometheus_client itself writes."""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from streams.adapters.scrape import Scrape, scrape


def _page() -> str:
    reg = CollectorRegistry()
    http = Histogram("x_http_seconds", "h", ["route", "status"], buckets=(0.1, 1), registry=reg)
    http.labels('/titles/{title_id} "q", a', "404").observe(0.05)
    http.labels('/titles/{title_id} "q", a', "404").observe(0.5)
    http.labels("/trending", "200").observe(2)
    errors = Counter("x_errors", "c", ["op"], registry=reg)
    errors.labels("write scores").inc(3)
    errors.labels("ping").inc()
    Counter("x_unborn", "no labelled child yet", ["topic"], registry=reg)
    return generate_latest(reg).decode()


def test_labels_with_spaces_braces_quotes_and_commas_are_read_exactly():
    page = Scrape.parse(_page())
    route = '/titles/{title_id} "q", a'
    assert page.value("x_http_seconds_count", route=route, status="404") == 2
    assert page.by_label("x_http_seconds_bucket", "le", route=route) == {
        "0.1": 1.0,
        "1.0": 2.0,
        "+Inf": 2.0,
    }
    assert page.value("x_errors_total", op="write scores") == 3


def test_totals_sum_over_labels_and_absent_series_read_zero():
    page = Scrape.parse(_page())
    assert page.total("x_errors_total") == 4 == page.totals()["x_errors_total"]
    assert page.total("x_http_seconds_count") == 3
    assert page.value("x_errors_total", op="nope") == 0.0
    assert page.value("x_errors_total") == 0.0  # exact labels: no unlabelled sample
    assert page.types["x_unborn"] == "counter" and not any(page.matching("x_unborn_total"))


def test_an_unreachable_worker_reads_as_an_empty_page():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page = scrape(port, timeout=0.5)
    assert page.samples == () and page.totals() == {}
