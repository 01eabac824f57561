"""The one reader of a worker's /metrics page, for the demo, the bench and the tests.

Parsing is prometheus_client's own (``text_string_to_metric_families``), not a
split on spaces: label values may hold spaces, braces, commas and escaped quotes
(route templates like ``/titles/{title_id}`` do), and label order is not part of a
sample's identity. Samples are looked up by name and a label subset.

>>> page = '''# TYPE reelstream_x_total counter
... reelstream_x_total{route="/a b",status="200"} 3.0
... reelstream_x_total{route="/c",status="404"} 2.0
... '''
>>> s = Scrape.parse(page)
>>> s.value("reelstream_x_total", status="200", route="/a b"), s.total("reelstream_x_total")
(3.0, 5.0)
>>> s.by_label("reelstream_x_total", "status")
{'200': 3.0, '404': 2.0}
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def page(port: int, timeout: float = 2.0) -> str:
    """A local worker's /metrics page; empty when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
            return resp.read().decode()
    except OSError:
        return ""


@dataclass(frozen=True)
class Scrape:
    """One parsed page: each family's name and type, and every sample."""

    types: dict[str, str]  # family name -> counter, gauge, histogram, ...
    samples: tuple[Sample, ...]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        families = list(text_string_to_metric_families(text))
        return cls(
            types={f.name: f.type for f in families},
            samples=tuple(s for f in families for s in f.samples),
        )

    def matching(self, name: str, **labels: str) -> Iterator[Sample]:
        """Samples called ``name`` whose labels include ``labels``."""
        for s in self.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                yield s

    def value(self, name: str, **labels: str) -> float:
        """The one sample with exactly these labels; 0.0 when absent (a series not yet born)."""
        for s in self.matching(name, **labels):
            if len(s.labels) == len(labels):
                return s.value
        return 0.0

    def total(self, name: str, **labels: str) -> float:
        """Sum over every sample called ``name`` whose labels include ``labels``."""
        return sum(s.value for s in self.matching(name, **labels))

    def by_label(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """``label``'s value -> sample value, e.g. a histogram's buckets by ``le``."""
        hits = self.matching(name, **labels)
        return {s.labels[label]: s.value for s in hits if label in s.labels}

    def totals(self) -> dict[str, float]:
        """Sample name -> sum over its labels: the shape the demo and the tests poll."""
        out: dict[str, float] = {}
        for s in self.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
        return out


def scrape(port: int, timeout: float = 2.0) -> Scrape:
    """Fetch and parse; an unreachable worker reads as an empty page."""
    return Scrape.parse(page(port, timeout))


FRESH_HIST = "reelstream_score_freshness_seconds_bucket"


def histogram_share(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Share of observations at or under each bucket bound, between two scrapes.

    >>> histogram_share({"0.1": 1, "+Inf": 2}, {"0.1": 9, "+Inf": 12})
    {'0.1': 0.8, '+Inf': 1.0}
    """
    total = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    if total <= 0:
        return {}
    return {le: round((after[le] - before.get(le, 0.0)) / total, 4) for le in after}


def scrape_buckets(port: int, name: str = FRESH_HIST) -> dict[str, float]:
    """Cumulative bucket counts of one histogram on a worker's /metrics, by ``le``
    (default: freshness, event time to score in Redis)."""
    return scrape(port).by_label(name, "le")
