"""The HTTP API every worker serves (Faust web views on aiohttp); docs/openapi.yaml describes it.

The handlers are written once. :class:`ServingReads` holds the viewer-facing reads,
served by the workers and by ``reelstream api`` (streams/api/serving.py, plain aiohttp,
:data:`SERVING_ROUTES`); the worker's :class:`Api` adds what needs its own state.
:func:`answer` turns a request into a status and JSON body for either server.

Handlers only read: the serving copy in Redis (scores, features, title stats,
trending lists), the process's catalog view and popularity counts, and (worker
only) the worker's own user profiles. Every handler is wrapped so that bad input gets a
4xx JSON body ``{"error": code, "detail": text}`` and an unexpected failure a
JSON 500/503, never a stack trace; each request is timed into
``reelstream_http_request_duration_seconds`` by route template.

Values read from Redis are decoded by streams/adapters/redis_values.py, the module the
worker encodes them with. Pure helpers (parameter parsing, title documents) are
importable without Faust:

>>> parse_k({"k": "5"})
5
>>> parse_k({"k": "0"})
Traceback (most recent call last):
...
streams.api.web.ApiError: invalid_k: k must be an integer from 1 to 100
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
from redis.exceptions import RedisError

from features.catalog import Title
from online_models.bandit_live import merge_batches
from online_models.experiment_live import adaptive_analysis, analyze_totals, merge_shards
from streams import metrics as m
from streams.adapters.feature_sink import read_experiment
from streams.adapters.kafka_internals import broker_metadata_ok
from streams.adapters.redis_keys import (
    features_key,
    recs_key,
    title_key,
    trending_key,
)
from streams.adapters.redis_values import (
    USER_COUNTRY,
    TrendingList,
    decode_title_stats,
    decode_user_features,
    user_country,
)
from streams.contract import COUNTRY_RE, is_valid_id

log = logging.getLogger("reelstream.web")

K_DEFAULT = 10
K_MAX = 100
TRENDING_K_DEFAULT = 20
WINDOWS = ("1h", "1d")
ROWS = ("top_picks", "trending")


def connect_api(url: str, max_connections: int = 64) -> Any:
    """A Redis client for the API: requests queue for one of ``max_connections`` connections
    (up to 2 s) instead of failing with "Too many connections" under bursts."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=2,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)


class ApiError(Exception):
    """A client-visible failure: HTTP status, machine-readable code, human detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def parse_k(query: Mapping[str, str], default: int = K_DEFAULT) -> int:
    raw = query.get("k")
    if raw is None:
        return default
    try:
        k = int(raw)
    except ValueError:
        k = 0
    if not 1 <= k <= K_MAX:
        raise ApiError(400, "invalid_k", f"k must be an integer from 1 to {K_MAX}")
    return k


def parse_country(query: Mapping[str, str]) -> str:
    """ISO 3166 alpha-2 (any case) or ``ALL``; default ``ALL``."""
    raw = query.get("country")
    if raw is None:
        return "ALL"
    country = raw.upper()
    if country != "ALL" and not COUNTRY_RE.match(country):
        raise ApiError(400, "invalid_country", "country must be ISO 3166 alpha-2 or ALL")
    return country


def parse_window(query: Mapping[str, str]) -> str:
    window = query.get("window", "1d")
    if window not in WINDOWS:
        raise ApiError(400, "invalid_window", f"window must be one of {', '.join(WINDOWS)}")
    return window


def check_params(query: Any, allowed: Iterable[str]) -> None:
    """Unknown or repeated query parameters are client errors, not silently ignored."""
    allowed = set(allowed)
    for name in set(query.keys()):
        if name not in allowed:
            shown = name[:40]
            raise ApiError(
                400,
                "unknown_parameter",
                f"unknown query parameter {shown!r}; allowed: {', '.join(sorted(allowed)) or '-'}",
            )
        if hasattr(query, "getall") and len(query.getall(name)) > 1:
            raise ApiError(400, "repeated_parameter", f"query parameter {name!r} given twice")


def check_id(value: str, what: str) -> str:
    if not is_valid_id(value):
        raise ApiError(400, f"invalid_{what}", f"{what} must match [A-Za-z0-9][A-Za-z0-9_.:-]*")
    return value


def title_document(title: Title) -> dict[str, Any]:
    return {
        "title_id": title.title_id,
        "name": title.name,
        "kind": title.kind,
        "genres": list(title.genres),
        "tags": {k: list(v) for k, v in title.tags.items()},
        "runtime_s": title.runtime_s,
        "release_year": title.release_year,
        "regions": list(title.regions),
        "cast": list(title.cast),
        "synopsis": title.synopsis,
        "series_id": title.series_id,
        "season": title.season,
        "episode": title.episode,
        "artwork": list(title.artwork),
        "derived_tags": {  # docs/catalog-intelligence.md: model tags where editors left none
            d: [{"value": v, "confidence": c, "source": "derived"} for v, c in pairs]
            for d, pairs in title.derived_tags.items()
        },
    }


def _now_ms() -> int:
    return int(time.time() * 1000)


Handler = Callable[..., Awaitable[tuple[int, Any]]]


class ServingReads:
    """The viewer-facing reads: what both the worker and ``reelstream api`` serve.

    Everything comes from the serving copy in Redis, a catalog view and title popularity
    (``engine``: anything with ``.catalog`` and ``.popularity``: the worker's
    :class:`online_models.engine.Engine`, or the views ``reelstream api`` follows,
    streams/api/serving.py). No table, no agent: :meth:`local_profile` knows no user
    unless a subclass (the worker's :class:`Api`) owns profiles.
    """

    def __init__(
        self, settings: Any, engine: Any, catalog_ready: asyncio.Event, redis_client: Any
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.catalog_ready = catalog_ready
        self.redis = redis_client
        self.prefix = settings.key_prefix
        self._unreadable: set[str] = set()  # trending keys already logged as unreadable

    # ---- data access -------------------------------------------------------------------
    def local_profile(self, user_id: str) -> Any | None:
        """This process's profile of the user: none here (profiles live in worker tables)."""
        return None

    def engine_popular(self, country: str, k: int) -> list[dict[str, Any]]:
        """Top titles by the decayed popularity counts, available in ``country``."""
        pop = self.engine.popularity
        ranked = sorted(pop.counts.items(), key=lambda kv: -kv[1])
        scale = pop.scale(pop.ref_ts) if pop.ref_ts is not None else 0.0
        cc = None if country == "ALL" else country
        out = []
        for tid, count in ranked:
            title = self.engine.catalog.get(tid)
            if title is None or not title.available_in(cc):
                continue
            out.append({"title_id": tid, "score": round(count * scale, 5)})
            if len(out) >= k:
                break
        if len(out) < k:  # a fresh worker: fill from the catalog so the list is never empty
            seen = {i["title_id"] for i in out}
            for tid, title in self.engine.catalog.titles.items():
                if len(out) >= k:
                    break
                if tid not in seen and title.available_in(cc):
                    out.append({"title_id": tid, "score": 0.0})
        return out

    async def trending_items(self, country: str, window: str, k: int) -> tuple[str, int, list]:
        """(source, generated_at, items): the workers' trending list in Redis, each item
        scored by its plays in the window; else the engine's popularity."""
        key = trending_key(self.prefix, country, window)
        blob = await self.redis.get(key)
        if blob:
            try:
                trending = TrendingList.decode(blob)
                self._unreadable.discard(key)
            except ValueError as exc:
                if key not in self._unreadable:  # once per key, not once per request
                    self._unreadable.add(key)
                    log.warning("%s: %s; serving popularity until it is rewritten", key, exc)
                trending = None
            if trending is not None and trending.items:
                items = [{"title_id": t, "score": n} for t, n in trending.items[:k]]
                return "redis", trending.generated_at, items
        return "engine_popularity", _now_ms(), self.engine_popular(country, k)

    def _decorate(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for rank, item in enumerate(items, 1):
            title = self.engine.catalog.get(item["title_id"])
            out.append(
                {
                    "title_id": item["title_id"],
                    "score": item.get("score"),
                    "rank": rank,
                    "name": title.name if title else None,
                    "reasons": item.get("reasons") or ["popular now"],
                    "artwork_id": item.get("artwork_id")
                    or (title.artwork[0] if title and title.artwork else None),
                }
            )
        return out

    # ---- handlers: return (status, body) or raise ApiError ----------------------------
    async def recommendations(self, query: Mapping[str, str], user_id: str) -> tuple[int, Any]:
        check_id(user_id, "user_id")
        k = parse_k(query)
        row = query.get("row", "top_picks")
        if row not in ROWS:
            raise ApiError(400, "invalid_row", f"row must be one of {', '.join(ROWS)}")
        now = _now_ms()
        blob = None
        if row == "top_picks":
            blob = await self.redis.get(recs_key(self.prefix, user_id))
        if blob:
            msg = orjson.loads(blob)
            items = [
                {**it, "name": getattr(self.engine.catalog.get(it["title_id"]), "name", None)}
                for it in msg.get("items", [])[:k]
            ]
            return 200, {
                "user_id": user_id,
                "row": row,
                "source": "scores",
                "items": items,
                "model_version": msg.get("model_version"),
                "experiment_arm": msg.get("experiment_arm"),
                "generated_at": msg.get("generated_at"),
                "event_ts": msg.get("event_ts"),
                "age_ms": max(0, now - int(msg.get("generated_at") or now)),
                "fallback": None,
            }
        country = await self.user_country(user_id)
        cc = country or "ALL"
        source, generated, items = await self.trending_items(cc, "1d", k)
        if source == "redis" and cc != "ALL" and not items:
            source, generated, items = await self.trending_items("ALL", "1d", k)
        return 200, {
            "user_id": user_id,
            "row": row,
            "source": "cold_start" if row == "top_picks" else "trending",
            "items": self._decorate(items),
            "model_version": None,
            "experiment_arm": None,
            "generated_at": generated or None,
            "event_ts": None,
            "age_ms": max(0, now - generated) if generated else 0,
            "fallback": f"trending:{cc}:1d" if source == "redis" else f"popularity:{cc}",
        }

    async def user_country(self, user_id: str) -> str | None:
        """The country of the user's latest event: the serving hash, else the local profile."""
        cc = user_country(await self.redis.hget(features_key(self.prefix, user_id), USER_COUNTRY))
        if cc is not None:
            return cc
        p = self.local_profile(user_id)
        return p.country if p is not None else None

    async def user_features(self, query: Mapping[str, str], user_id: str) -> tuple[int, Any]:
        check_id(user_id, "user_id")
        raw = await self.redis.hgetall(features_key(self.prefix, user_id))
        p = self.local_profile(user_id)
        if not raw and p is None:
            raise ApiError(404, "unknown_user", "no features for this user")
        profile = None
        if p is not None:
            profile = {
                "events": p.events,
                "last_ts": p.last_ts,
                "country": p.country,
                "device": p.device,
                "top_tags": [{"tag": t, "weight": round(w, 5)} for t, w in p.top_tags(10)],
                "recent": list(p.recent),
                "in_progress": len(p.in_progress),
                "finished": len(p.finished),
            }
        return 200, {
            "user_id": user_id,
            "features": decode_user_features(raw) if raw else None,
            "profile": profile,
        }

    async def title(self, query: Mapping[str, str], title_id: str) -> tuple[int, Any]:
        check_id(title_id, "title_id")
        t = self.engine.catalog.get(title_id)
        raw = await self.redis.hgetall(title_key(self.prefix, title_id))
        if t is None and not raw:
            raise ApiError(404, "unknown_title", "this title is not in the catalog")
        pop = self.engine.popularity
        return 200, {
            "title_id": title_id,
            "catalog": title_document(t) if t is not None else None,
            "stats": decode_title_stats(raw) if raw else None,
            "popularity": round(pop.value(title_id, pop.ref_ts or 0), 5),
        }

    async def trending(self, query: Mapping[str, str]) -> tuple[int, Any]:
        country = parse_country(query)
        window = parse_window(query)
        k = parse_k(query, TRENDING_K_DEFAULT)
        source, generated, items = await self.trending_items(country, window, k)
        return 200, {
            "country": country,
            "window": window,
            "source": source,
            "generated_at": generated or None,
            "items": self._decorate(items),
        }

    async def healthz(self, query: Mapping[str, str]) -> tuple[int, Any]:
        return 200, {"status": "ok"}

    async def redis_ok(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), timeout=2.0))
        except (RedisError, OSError, TimeoutError):
            m.REDIS_ERRORS.labels(op="ping").inc()
            return False

    async def ready_checks(self) -> dict[str, bool]:
        """Readiness: what must hold before a load balancer sends requests here."""
        return {"redis": await self.redis_ok(), "catalog_loaded": self.catalog_ready.is_set()}

    def ready_extra(self) -> dict[str, Any]:
        """Shown by /readyz beside the checks, without deciding readiness."""
        return {}

    async def readyz(self, query: Mapping[str, str]) -> tuple[int, Any]:
        checks = await self.ready_checks()
        ready = all(checks.values())
        m.READY.set(1 if ready else 0)
        extra = self.ready_extra()
        if ready:
            return 200, {"status": "ready", "checks": checks, **extra}
        failing = ", ".join(k for k, v in checks.items() if not v)
        return 503, {
            "status": "not_ready",
            "error": "not_ready",
            "detail": f"failing: {failing}",
            "checks": checks,
            **extra,
        }


class Api(ServingReads):
    """The worker's views: the serving reads, plus what needs the worker's own state
    (profiles, the artwork policy, experiments, the stall watch, table recovery).
    ``register`` adds them to the Faust app."""

    def __init__(
        self,
        app: Any,
        settings: Any,
        engine: Any,
        profiles: Any,
        catalog_ready: asyncio.Event,
        redis_client: Any,
    ) -> None:
        super().__init__(settings, engine, catalog_ready, redis_client)
        self.app = app
        self.profiles = profiles  # TableProfileStore: cache + table
        self._broker_checked = 0.0
        self._broker_ok = False
        # The worker's Redis catch-up state (streams/adapters/redis_recovery.py), shown by /readyz.
        self.serving: Callable[[], dict[str, Any] | None] | None = None
        self.forecast: Any = None  # streams/api/forecast_web.py, set by register()
        # Events partitions the worker's stall watch reports (streams/worker/monitor.py).
        self.stalled: Callable[[], set[str]] = set

    def local_profile(self, user_id: str) -> Any | None:
        """This worker's profile of the user (only for users on its partitions)."""
        from features.user_profile import UserProfile

        p = self.profiles.cache.get(user_id)
        if p is not None:
            return p
        try:
            raw = self.profiles.table.get(user_id)
        except Exception:  # a partition moving away mid-read
            return None
        if raw is None:
            return None
        if isinstance(raw, bytes | bytearray):
            raw = orjson.loads(raw)
        return UserProfile.from_dict(raw)

    async def artwork(
        self, query: Mapping[str, str], user_id: str, title_id: str
    ) -> tuple[int, Any]:
        """The artwork policy's view of one viewer and title: decides and logs nothing."""
        check_id(user_id, "user_id")
        check_id(title_id, "title_id")
        hook = getattr(self.engine, "artwork", None)
        if hook is None:
            raise ApiError(404, "artwork_off", "no artwork policy: REELSTREAM_ARTWORK_POLICY=off")
        if self.engine.catalog.get(title_id) is None:
            raise ApiError(404, "unknown_title", "this title is not in the catalog")
        profile = self.local_profile(user_id)
        return 200, {"user_id": user_id, **hook.explain(profile, title_id, _now_ms())}

    async def experiments(self, query: Mapping[str, str]) -> tuple[int, Any]:
        """Configured experiments: layers, traffic, arms, shares and exposures on this worker."""
        assigner = getattr(self.engine, "experiments", None)
        return 200, {"experiments": assigner.describe() if assigner is not None else []}

    async def experiment(self, query: Mapping[str, str], experiment_id: str) -> tuple[int, Any]:
        """One experiment: arms, shares, per-arm metrics with always-valid intervals, SRM,
        and a decision, from the per-partition sums every worker writes to Redis."""
        check_id(experiment_id, "experiment_id")  # before any key is built from it
        assigner = getattr(self.engine, "experiments", None)
        exp = assigner.experiments.get(experiment_id) if assigner is not None else None
        if exp is None:
            known = ", ".join(sorted(assigner.experiments)) if assigner is not None else ""
            raise ApiError(
                404,
                "unknown_experiment",
                f"no experiment {experiment_id!r} in the experiments file"
                + (f"; known: {known}" if known else " (no experiments configured)"),
            )
        shards, unreadable = await read_experiment(self.redis, self.prefix, experiment_id)
        names = {a.name for a in exp.arms}
        totals = merge_shards({a: t for a, t in sh.arms.items() if a in names} for sh in shards)
        if exp.bandit is None:
            body = analyze_totals(exp, totals)
        else:
            batches = merge_batches(sh.batches for sh in shards)
            body = adaptive_analysis(exp, totals, batches, assigner.allocation_doc(exp.id))
        body["exposures_this_worker"] = {
            a.name: assigner.exposures[(exp.id, a.name)] for a in exp.arms
        }
        body["coverage"] = {
            "partitions": sorted(sh.partition for sh in shards),
            "expected_partitions": self.settings.partitions,
            "since": min((sh.since for sh in shards), default=None),
            "written": max((sh.written for sh in shards), default=None),
            "unreadable_fields": unreadable,
        }
        return 200, body

    async def healthz(self, query: Mapping[str, str]) -> tuple[int, Any]:
        stalled = sorted(self.stalled())
        if stalled:  # liveness: a restart resumes the partitions from the committed offsets
            return 503, {
                "status": "stalled",
                "error": "stalled",
                "detail": f"partitions {stalled} have records and none was read",
            }
        return 200, {"status": "ok"}

    async def broker_ok(self) -> bool:
        """Metadata round trip through the worker's producer; cached for two seconds."""
        if time.monotonic() - self._broker_checked < 2.0:
            return self._broker_ok
        ok = await broker_metadata_ok(self.app, timeout_s=3.0)
        self._broker_checked, self._broker_ok = time.monotonic(), ok
        return ok

    async def ready_checks(self) -> dict[str, bool]:
        redis_ok = await self.redis_ok()
        serving = self.serving() if self.serving is not None else None
        if serving is not None and not serving["writes_ok"]:
            redis_ok = False  # answers PING, but the worker's writes still fail
        recovery = self.app.tables.recovery
        return {
            "broker": await self.broker_ok(),
            "redis": redis_ok,
            "tables_recovered": recovery.completed.is_set() and not recovery.in_recovery,
            "catalog_loaded": self.catalog_ready.is_set(),
        }

    def ready_extra(self) -> dict[str, Any]:
        # Not a check: during a rebuild every worker would leave the load balancer at once.
        serving = self.serving() if self.serving is not None else None
        return {"serving_copy": serving} if serving is not None else {}


ROUTES: list[tuple[str, str, tuple[str, ...]]] = [
    # (path template, Api method, allowed query parameters)
    ("/recommendations/{user_id}", "recommendations", ("k", "row")),
    ("/users/{user_id}/features", "user_features", ()),
    ("/titles/{title_id}", "title", ()),
    ("/trending", "trending", ("country", "window", "k")),
    ("/artwork/{user_id}/{title_id}", "artwork", ()),
    ("/experiments", "experiments", ()),
    ("/experiments/{experiment_id}", "experiment", ()),
    ("/healthz", "healthz", ()),
    ("/readyz", "readyz", ()),
]
SERVING_ROUTES = [r for r in ROUTES if callable(getattr(ServingReads, r[1], None))]
"""The routes :class:`ServingReads` answers: all ``reelstream api`` serves (with /metrics)."""


async def run_handler(
    handler: Handler,
    path: str,
    allowed: tuple[str, ...],
    query: Any,
    kwargs: dict[str, str],
    *,
    server: str = "worker",
) -> tuple[int, Any]:
    """Validate parameters, call, and turn every failure into a JSON status and body.

    ``server`` names the process answering ("worker", "reelstream api"): a 500 points the
    caller to the log that has the traceback, and the two processes log apart."""
    try:
        check_params(query, allowed)
        return await handler(query, **kwargs)
    except ApiError as exc:
        return exc.status, {"error": exc.code, "detail": exc.detail}
    except (RedisError, OSError, TimeoutError) as exc:
        m.REDIS_ERRORS.labels(op="api_read").inc()
        log.warning("%s: Redis unavailable: %s", path, exc)
        return 503, {"error": "redis_unavailable", "detail": "the serving store did not answer"}
    except Exception:
        log.exception("%s: unexpected error", path)
        return 500, {"error": "internal", "detail": f"unexpected error; see the {server} log"}


async def answer(
    handler: Handler,
    path: str,
    allowed: tuple[str, ...],
    method: str,
    query: Any,
    kwargs: dict[str, str],
    *,
    server: str = "worker",
) -> tuple[int, bytes]:
    """One request, whatever serves it (Faust's views, or ``reelstream api``'s aiohttp):
    :func:`run_handler`, the JSON body, and the request timed by route template."""
    started = time.perf_counter()
    status, body = await run_handler(handler, path, allowed, query, kwargs, server=server)
    data = orjson.dumps(body)
    m.HTTP_SECONDS.labels(path, method, str(status)).observe(time.perf_counter() - started)
    return status, data


def route_pattern(path: str) -> str:
    """Path parameters match any segment (aiohttp's default refuses braces): the handler,
    not the router, decides what an invalid id is, and answers 400 with a JSON body."""
    return re.sub(r"\{(\w+)\}", r"{\1:[^/]+}", path)


def json_object_body(raw: bytes, max_bytes: int, fields: set[str]) -> dict[str, Any]:
    """A POST body as a JSON object with only ``fields``, or an :class:`ApiError` (400)."""
    if len(raw) > max_bytes:
        raise ApiError(400, "invalid_body", f"the body must be at most {max_bytes} bytes")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_body", "the body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    unknown = set(doc) - fields
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown fields: {', '.join(sorted(unknown))[:80]}")
    return doc


def json_post_page(
    app: Any, path: str, name: str, handle: Callable[[bytes], Awaitable[tuple[int, Any]]]
) -> None:
    """Add ``POST path``: the raw body to ``handle``, with the GET routes' errors and timing."""
    from faust.web import View

    class PostView(View):  # type: ignore[misc]
        async def post(self, request):  # type: ignore[no-untyped-def]
            raw = await request.read()

            async def handler(query: Any) -> tuple[int, Any]:
                return await handle(raw)

            status, data = await answer(handler, path, (), request.method, request.query, {})
            return self.bytes(data, content_type="application/json", status=status)

    app.page(path, name=name)(PostView)


def register(app: Any, api: Api) -> None:
    """Add each route as a Faust page, wrapped with validation, errors and timing."""
    for path, method_name, allowed in ROUTES:
        handler = getattr(api, method_name)

        def make(  # type: ignore[no-untyped-def]
            handler: Handler = handler,
            path: str = path,
            allowed: tuple[str, ...] = allowed,
            name: str = method_name,
        ):
            async def get(view, request, **kwargs):  # type: ignore[no-untyped-def]
                status, data = await answer(
                    handler, path, allowed, request.method, request.query, kwargs
                )
                return view.bytes(data, content_type="application/json", status=status)

            get.__name__ = name
            return get

        app.page(route_pattern(path), name=method_name)(make())
    from streams.api import query_web  # POST /query (docs/catalog-intelligence.md)

    query_web.register(app, api)
    from streams.api import forecast_web  # POST /forecast (docs/catalog-intelligence.md)

    api.forecast = forecast_web.ForecastService(getattr(api.settings, "forecast_state", ""))
    forecast_web.register(app, api.forecast)
    _json_errors_for_unrouted(app)


def _json_errors_for_unrouted(app: Any) -> None:
    app.web.web_app.middlewares.append(json_errors_middleware())


def json_errors_middleware() -> Any:
    """aiohttp's own 404/405 for paths no view matches: JSON bodies, like ours."""
    from aiohttp import web as aioweb

    @aioweb.middleware
    async def json_errors(request, handler):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return await handler(request)
        except aioweb.HTTPException as exc:
            if exc.status < 400 or request.match_info.route.resource is not None:
                raise
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
            m.HTTP_SECONDS.labels("unmatched", request.method, str(exc.status)).observe(
                time.perf_counter() - started
            )
            return aioweb.Response(
                body=orjson.dumps({"error": code, "detail": exc.reason}),
                status=exc.status,
                content_type="application/json",
            )

    return json_errors
