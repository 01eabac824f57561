"""What the worker's HTTP port serves, and to whom (docs/operations.md, "Exposure").

Faust serves built-in pages unless told not to: ``/table/`` lists the tables and
reads any key (user profiles: what each viewer watched), ``/router/`` maps keys and
partitions to workers, ``/`` statistics and ``/graph`` describe internals. The
worker uses none of them (no ``@table_route``), so all are off, through Faust's
public ``web_*_enabled`` settings (faust-streaming 0.15).

Debug pages (``/debug/...``) show model internals. They are registered only when
``REELSTREAM_DEBUG_TOKEN`` is set, and answer only requests that present it as
``Authorization: Bearer <token>``; otherwise the path is an ordinary JSON 404.

>>> token_presented("s3cret", "Bearer s3cret"), token_presented("s3cret", "Bearer nope")
(True, False)
>>> token_presented("", "Bearer "), token_presented("s3cret", None)
(False, False)
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

FAUST_PAGES_OFF: dict[str, bool] = {
    "web_tables_enabled": False,
    "web_router_enabled": False,
    "web_stats_enabled": False,
    "web_graph_enabled": False,
    "web_metrics_enabled": False,
}
"""Keyword arguments for ``faust.App``: every built-in page off."""

View = Callable[[Any, Any], Awaitable[Any]]


def token_presented(expected: str, authorization: str | None) -> bool:
    """True when a token is configured and the header carries exactly it (constant time)."""
    if not expected or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def debug_page(app: Any, token: str, path: str) -> Callable[[View], View]:
    """Like ``@app.page(path)``, for a page served only to holders of ``token``.

    Without a token the page is not registered at all, so nothing about it answers.
    """

    def register(view: View) -> View:
        if not token:
            return view

        async def guarded(web: Any, request: Any) -> Any:
            if not token_presented(token, request.headers.get("Authorization")):
                body = {"error": "unauthorized", "detail": "this debug page needs its token"}
                return web.bytes(
                    orjson.dumps(body),
                    content_type="application/json",
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return await view(web, request)

        guarded.__name__ = view.__name__
        guarded.__doc__ = view.__doc__
        app.page(path)(guarded)
        return view

    return register
