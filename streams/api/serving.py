"""``reelstream api``: the viewer-facing reads in a process of their own.

A worker serves its HTTP API on the event loop that also runs its agents, so a long
batch, a checkpoint or a catalog rebuild holds ``GET /recommendations`` back (and a
web server in a thread of the worker is worse: the GIL). This process serves the
same handlers (:class:`streams.api.web.ServingReads`, the worker's code, not a copy)
from the serving copy in Redis plus its own followers of the compacted catalog and
title-snapshot topics (:class:`~streams.adapters.catalog_follower.CatalogFollower`,
:class:`~streams.adapters.title_view_follower.TitleViewFollower`): no agent, no
table, no consumer group, no producer. It scales and restarts apart from the
workers (docs/architecture.md, "What runs where").

Routes: :data:`streams.api.web.SERVING_ROUTES` (recommendations, user features,
titles, trending, ``/healthz``, ``/readyz``) and ``/metrics``. ``/readyz`` is 200 once
Redis answers ``PING`` and the catalog has caught up; ``/healthz`` is 200 while the
event loop answers. Lockdown as on the worker (streams/api/web_lockdown.py): binds
``REELSTREAM_API_HOST`` (``127.0.0.1`` unless told otherwise) on
``REELSTREAM_API_PORT`` (6067); no Faust pages and no debug pages exist here; any
other path is a JSON 404.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web as aioweb
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from features.catalog import Catalog
from features.title_view import GlobalTitleView
from streams import metrics as m
from streams.adapters.catalog_follower import CatalogFollower
from streams.adapters.title_view_follower import TitleViewFollower
from streams.adapters.topic_follower import CompactedTopicFollower
from streams.api.web import (
    SERVING_ROUTES,
    Handler,
    ServingReads,
    answer,
    connect_api,
    json_errors_middleware,
    route_pattern,
)
from streams.settings import Settings

log = logging.getLogger("reelstream.api")

# What /metrics shows here: the families this process moves. Not the worker's (a lag or
# freshness series at zero would read as a healthy worker), nor the dead-letter counts the
# followers keep (the workers dead-letter those records and count them already).
METRIC_FAMILIES = frozenset(
    {
        "reelstream_http_request_duration_seconds",
        "reelstream_redis_errors",
        "reelstream_ready",
        "reelstream_catalog_titles",
        "reelstream_catalog_tagging",
        "reelstream_catalog_tagging_seconds",
        "reelstream_catalog_tagger_loaded",
        "reelstream_title_view_titles",
    }
)
RETRY_MAX_S = 30.0
SERVER = "reelstream api"  # how a 500's detail names this process (its log, not a worker's)


@dataclass
class ServingView:
    """What :class:`ServingReads` reads besides Redis (the worker passes its engine)."""

    catalog: Catalog = field(default_factory=Catalog)
    popularity: GlobalTitleView = field(default_factory=GlobalTitleView)


class _Families:
    """A collector of :data:`streams.metrics.REGISTRY`'s families named in ``names``."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def collect(self) -> Iterable[Any]:
        return (f for f in m.REGISTRY.collect() if f.name in self.names)


def metrics_text(names: Iterable[str] = METRIC_FAMILIES) -> bytes:
    """Prometheus text of the named families only."""
    return generate_latest(_Families(names))  # type: ignore[arg-type]


async def follow(follower: CompactedTopicFollower) -> None:
    """Run a follower for the life of the process: if Kafka fails it (a topic not created
    yet, a broker away at start), log, wait a little longer each time, and read again."""
    delay = 1.0
    while True:
        try:
            await follower.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "following %s failed (%s: %s); again in %.0f s",
                follower.topic,
                type(exc).__name__,
                str(exc)[:200],
                delay,
            )
            await asyncio.sleep(delay)  # backoff before reconnecting, not synchronisation
            delay = min(delay * 2, RETRY_MAX_S)


def _view(reads: ServingReads, path: str, name: str, allowed: tuple[str, ...]) -> Handler:
    handler = getattr(reads, name)

    async def view(request: aioweb.Request) -> aioweb.Response:
        status, data = await answer(
            handler,
            path,
            allowed,
            request.method,
            request.query,
            dict(request.match_info),
            server=SERVER,
        )
        return aioweb.Response(body=data, status=status, content_type="application/json")

    view.__name__ = name
    return view


async def _metrics(request: aioweb.Request) -> aioweb.Response:
    return aioweb.Response(body=metrics_text(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def make_app(reads: ServingReads) -> aioweb.Application:
    """The aiohttp application serving ``reads``: :data:`SERVING_ROUTES` and /metrics."""
    app = aioweb.Application(middlewares=[json_errors_middleware()])
    for path, name, allowed in SERVING_ROUTES:
        app.router.add_get(route_pattern(path), _view(reads, path, name, allowed), name=name)
    app.router.add_get("/metrics", _metrics, name="metrics")
    return app


def build(settings: Settings, redis_client: Any = None) -> aioweb.Application:
    """:func:`make_app` over Redis and followed topics, the followers started and stopped
    with the application."""
    view = ServingView()
    catalog = CatalogFollower(settings, view.catalog)  # no reject: the workers dead-letter
    titles = TitleViewFollower(settings, view.popularity)
    redis_client = redis_client if redis_client is not None else connect_api(settings.redis_url)
    app = make_app(ServingReads(settings, view, catalog.ready, redis_client))

    async def followers(app: aioweb.Application) -> Any:
        tasks = [asyncio.create_task(follow(f)) for f in (catalog, titles)]
        yield
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis_client.aclose()

    app.cleanup_ctx.append(followers)
    return app


def run(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM."""
    log.info(
        "reelstream api on %s:%d (catalog %s, redis %s)",
        settings.api_host,
        settings.api_port,
        settings.catalog_topic,
        settings.redis_url.split("@")[-1],
    )
    aioweb.run_app(
        build(settings),
        host=settings.api_host,
        port=settings.api_port,
        access_log=None,
        print=None,
        handle_signals=True,
    )
    return 0
