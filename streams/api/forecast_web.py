"""``POST /forecast``: a greenlight forecast per region, with an interval, from this worker.

Body ``{"attributes": {...}, "regions": [...]}`` (``regions`` optional: every region
the forecaster knows). ``attributes`` are a title's greenlight attributes (genres,
tags, runtime_s, cast, kind, synopsis), checked by
:func:`online_models.forecast.parse_attributes`; regions are ISO 3166 alpha-2 codes
the forecaster was trained on.

Where the model comes from: ``REELSTREAM_FORECAST_STATE`` names a state file written
by ``reelstream forecast train RESULTS`` (released titles with their per-region
first-28-day completion-weighted audiences). The worker reads it once at start, in a
thread, and rebuilds the River models by replaying it (no pickle). Then it learns,
online, each released title's result published on the ``<app_id>-title-results``
topic (``reelstream forecast publish``; streams/adapters/results_follower.py) that
the state did not hold. Until a model has ``MIN_TITLES`` titles, or when the state
file is unusable, the route answers 503 with a ``detail`` saying which. Bad input is
a 400 with a code (``invalid_body``, ``invalid_attributes``, ``invalid_regions``,
``unknown_region``); never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from online_models.forecast import (
    DEFAULT_CONFIDENCE,
    DEFAULT_K_SIMILAR,
    MAX_STATE_BYTES,
    ForecastInputError,
    GreenlightForecaster,
    build,
    decode_state,
    parse_attributes,
    parse_regions,
)
from streams import metrics as m
from streams.adapters.model_files import ModelFileUnusable, read_model_file
from streams.api.web import ApiError, json_object_body, json_post_page

log = logging.getLogger("reelstream.forecast")

PATH = "/forecast"
MIN_TITLES = 20  # below this, a forecast is the mean of a handful of titles: 503
BODY_MAX = 16_384
UNIT = "completion-weighted viewers in the first 28 days"
NOTE = (
    "how released titles like this one did in each region; not the finished title's "
    "quality, marketing, release timing or competition (docs/catalog-intelligence.md)"
)


def parse_body(raw: bytes, known_regions: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """(attributes, regions) from the request body, or an :class:`ApiError` (400)."""
    doc = json_object_body(raw, BODY_MAX, {"attributes", "regions"})
    if "attributes" not in doc:
        raise ApiError(400, "invalid_attributes", "attributes is required")
    try:
        attrs = parse_attributes(doc["attributes"])
        regions = (
            parse_regions(doc["regions"], known_regions)
            if "regions" in doc
            else list(known_regions)
        )
    except ForecastInputError as exc:
        raise ApiError(400, exc.code, exc.detail) from None
    return attrs, regions


class ForecastService:
    """The worker's forecaster, and why there is none when there is none."""

    def __init__(self, state_path: str = "") -> None:
        self.state_path = state_path
        self.model: GreenlightForecaster | None = None
        self.header: dict[str, Any] = {}
        self.status = "loading" if state_path else "unconfigured"
        self.reason = ""
        self.online = 0  # results learned from the topic, beyond the state file
        # Set once the state file is loaded or refused: results learned before that would
        # go to a model about to be replaced.
        self.settled = asyncio.Event()
        if not state_path:
            self.settled.set()

    async def load_async(self) -> None:
        await asyncio.to_thread(self.load)
        self.settled.set()

    def learn(self, title_id: str, attrs: dict[str, Any], audience: dict[str, float]) -> str:
        """One released title's result from the topic: ``learned``, ``known`` (the state or
        an earlier record had it), or why it was refused (``regions``, ``failed``)."""
        if self.status == "failed":
            return "failed"  # the configured state is unusable: do not grow a model beside it
        model = self.model
        if model is None:  # no state configured: the topic alone trains the forecaster
            model = self.model = GreenlightForecaster(
                sorted(audience), k_similar=DEFAULT_K_SIMILAR, confidence=DEFAULT_CONFIDENCE
            )
            self.status = "ready"
        if set(audience) != set(model.regions):
            return "regions"
        if not model.learn(attrs, audience, title_id):
            return "known"
        self.online += 1
        m.FORECASTER_TITLES.set(model.seen)
        return "learned"

    def load(self) -> None:
        """Read, check and replay the state file (blocking: call it in a thread)."""
        started = time.perf_counter()
        try:
            header, results = decode_state(read_model_file(self.state_path, MAX_STATE_BYTES))
            model = build(header, results)
        except (ModelFileUnusable, ForecastInputError) as exc:
            self.status, self.reason = "failed", str(exc)
            log.error("REELSTREAM_FORECAST_STATE unusable, POST /forecast answers 503: %s", exc)
            return
        self.model, self.header, self.status = model, header, "ready"
        m.FORECASTER_TITLES.set(model.seen)
        log.info(
            "forecaster loaded: %d released titles, regions %s, in %.1f s",
            model.seen,
            ",".join(model.regions),
            time.perf_counter() - started,
        )

    def unavailable(self) -> ApiError:
        if self.model is not None:  # ready, but too few titles learned so far
            return ApiError(
                503,
                "forecaster_unavailable",
                f"the forecaster has learned {self.model.seen} released titles; "
                f"it answers from {MIN_TITLES}",
            )
        detail = {
            "unconfigured": "no forecaster is trained on this worker: set "
            "REELSTREAM_FORECAST_STATE to a file written by `reelstream forecast train`",
            "loading": "the forecaster state is still loading; retry in a few seconds",
            "failed": f"the forecaster state could not be loaded ({self.reason[:200]})",
        }[self.status]
        return ApiError(503, "forecaster_unavailable", detail)

    def answer(self, raw: bytes) -> dict[str, Any]:
        model = self.model
        if model is None or model.seen < MIN_TITLES:
            raise self.unavailable()
        attrs, regions = parse_body(raw, model.regions)
        return {
            "forecasts": model.forecast(attrs, regions),
            "unit": UNIT,
            "confidence": model.confidence,
            "model": {
                "titles_learned": model.seen,
                "learned_online": self.online,
                "regions": list(model.regions),
                "state_sha256": self.header.get("sha256"),
                "trained_at": self.header.get("created_ts"),
            },
            "attributes": attrs,
            "note": NOTE,
        }


class ForecastEndpoint:
    def __init__(self, service: ForecastService) -> None:
        self.service = service

    async def handle(self, raw: bytes) -> tuple[int, Any]:
        return 200, self.service.answer(raw)


def register(app: Any, service: ForecastService) -> ForecastEndpoint:
    """Add ``POST /forecast``; with a configured state, load it in a thread at start."""
    endpoint = ForecastEndpoint(service)
    json_post_page(app, PATH, "forecast", endpoint.handle)
    if service.status == "loading":

        @app.task
        async def load_forecaster() -> None:
            await service.load_async()

    return endpoint
