"""``POST /query``: a watchlist asked for in plain language, answered by this worker.

Body ``{"user_id": str, "text": str, "k": int (1-100, default 10)}``. The answer
(online_models/watchlist.py) carries the parsed intent, whether the request
could be answered and why not, and up to ``k`` titles that satisfy every hard
constraint, ordered by the viewer's own model. A worker scores with its own
engine: a viewer on another worker's partitions is ranked as a newcomer
(``"personalized": false``), like the cold-start path of ``/recommendations``.

Registered from :func:`streams.api.web.register`; validation and errors follow the
other routes (``{"error", "detail"}``, 4xx for bad input, never a stack trace).
"""

from __future__ import annotations

from typing import Any

from online_models.watchlist import QueryService
from streams.api.web import K_DEFAULT, K_MAX, ApiError, check_id, json_object_body, json_post_page

PATH = "/query"
TEXT_MAX = 500
BODY_MAX = 4096


def parse_body(raw: bytes) -> tuple[str, str, int]:
    """(user_id, text, k) from the request body, or an :class:`ApiError` (400)."""
    doc = json_object_body(raw, BODY_MAX, {"user_id", "text", "k"})
    user_id = doc.get("user_id")
    if not isinstance(user_id, str):
        raise ApiError(400, "invalid_user_id", "user_id must be a string")
    check_id(user_id, "user_id")
    text = doc.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > TEXT_MAX:
        raise ApiError(400, "invalid_text", f"text must be 1 to {TEXT_MAX} characters")
    k = doc.get("k", K_DEFAULT)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= K_MAX:
        raise ApiError(400, "invalid_k", f"k must be an integer from 1 to {K_MAX}")
    return user_id, text, k


class QueryEndpoint:
    """The handler, bound to a worker's :class:`streams.api.web.Api` (engine and profiles)."""

    def __init__(self, api: Any, now_year: int | None = None) -> None:
        self.api = api
        self.service = QueryService(api.engine, now_year=now_year)

    async def handle(self, raw: bytes) -> tuple[int, Any]:
        user_id, text, k = parse_body(raw)
        profile = self.api.local_profile(user_id)
        return 200, self.service.answer(user_id, text, k, profile)


def register(app: Any, api: Any) -> QueryEndpoint:
    endpoint = QueryEndpoint(api)
    json_post_page(app, PATH, "query", endpoint.handle)
    return endpoint
