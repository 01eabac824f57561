"""The pure core the worker and the replay tool share: fold events in, produce score messages.

No Kafka, no Redis: profiles live in any mapping-like store handed in (a dict in
tests and replay, a Faust-table-backed store in the worker).

>>> from features.catalog import parse_title
>>> eng = Engine()
>>> eng.catalog.upsert(parse_title({"title_id": "t1", "name": "A", "genres": ["drama"]}))
>>> eng.catalog.upsert(parse_title({"title_id": "t2", "name": "B", "genres": ["drama"]}))
>>> eng.ingest({"event_id": "e1", "event_type": "play", "user_id": "u1", "title_id": "t1",
...             "ts": 1000, "position_s": 0}).refresh
True
>>> msg = eng.score_message("u1", event_ts=1000, now_ms=1005)
>>> [i["title_id"] for i in msg["items"]], msg["model_version"]
(['t2'], 'hybrid-lr-1')
>>> msg["continue_watching"]  # t1 started: out of the main row, continue row from 2 %
[]
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.catalog import Catalog
from features.event_gate import DUPLICATE, OK, TOO_LATE
from features.title_popularity import TitlePopularity
from features.user_profile import UserProfile
from online_models.recommender import Recommender, Rows

if TYPE_CHECKING:
    from online_models.artwork import ArtworkHook
    from online_models.experiment_live import LiveFold
    from online_models.experiments import Assigner

SCORE_CONTRACT_VERSION = 1


@dataclass(slots=True)
class Ingested:
    """What :meth:`Engine.ingest` did with one event.

    ``status`` is ``ok``, ``duplicate``, ``too_late`` or ``from_future``
    (features/event_gate.py); ``title_record`` is the compact record the title
    owner must receive (features/user_features.py), or None.
    """

    status: str
    refresh: bool = False
    title_record: dict[str, Any] | None = None


class Engine:
    def __init__(
        self,
        profiles: MutableMapping[str, UserProfile] | None = None,
        catalog: Catalog | None = None,
        top_k: int = 20,
        popularity: TitlePopularity | None = None,
    ) -> None:
        self.catalog = catalog or Catalog()
        self.profiles: MutableMapping[str, UserProfile] = profiles if profiles is not None else {}
        # The worker passes the global view fed by the title owners
        # (features/title_view.py); replay and tests count locally.
        self.popularity = popularity if popularity is not None else TitlePopularity()
        self.top_k = top_k
        self.models = Recommender(self.catalog)
        # Optional hooks (docs/artwork-and-experiments.md): None keeps the title's first
        # artwork variant and a null experiment_arm.
        self.artwork: ArtworkHook | None = None
        self.experiments: Assigner | None = None
        # Per-arm metrics folded from the stream (online_models/experiment_live.py); the
        # worker feeds it (streams/worker/batch_core.py), since it knows the partitions.
        self.experiment_fold: LiveFold | None = None

    def profile(self, user_id: str) -> UserProfile:
        p = self.profiles.get(user_id)
        if p is None:
            p = self.profiles[user_id] = UserProfile()
        return p

    def rows(self, user_id: str, event_ts: int, k: int | None = None) -> Rows:
        """The user's main row and continue-watching row as of ``event_ts``, ranked as the
        user's experiment arms say (blend weights, candidate mix)."""
        profile = self.profile(user_id)
        ranking = self.experiments.ranking(user_id) if self.experiments is not None else None
        return self.models.recommend(
            user_id,
            profile,
            max(event_ts, profile.last_ts),
            k or self.top_k,
            blend=ranking.blend if ranking else None,
            sources=ranking.sources if ranking else None,
        )

    def ingest(
        self, ev: dict[str, Any], now_ms: int | None = None, reordered: bool = False
    ) -> Ingested:
        """Admit (dedupe, lateness, future guard), then fold in profile, features, popularity.

        ``now_ms`` is the wall clock in the worker; a replay passes None (no
        future guard) so it judges events by event time only.
        """
        uid = ev["user_id"]
        profile = self.profile(uid)
        status = profile.gate.check(ev["event_id"], ev["ts"], now_ms, reordered)
        if status != OK:
            if status in (DUPLICATE, TOO_LATE):
                # Re-write the row: after a crash the local store can be ahead of the
                # changelog, and a replayed duplicate is the chance to re-send it; a
                # too-late verdict is remembered in the row so a replay repeats it.
                self.profiles[uid] = profile
            return Ingested(status)
        self.popularity.observe(ev)
        self.models.observe(ev, profile)  # before the profile folds the event in
        title = self.catalog.get(ev["title_id"])
        refresh = profile.update(ev, title)
        rec = profile.features.update(ev, title.runtime_s if title else None)
        self.profiles[uid] = profile  # marks it dirty in write-back stores
        if self.artwork is not None:
            self.artwork.observe(ev)
        return Ingested(OK, refresh, rec)

    def score_message(
        self, user_id: str, event_ts: int, now_ms: int, k: int | None = None
    ) -> dict[str, Any]:
        """The score contract v1 (docs/score-contract.md) for one user.

        ``items`` is the ranked main row; ``continue_watching`` (additive) holds the
        user's in-progress titles, most recent first.
        """
        rows = self.rows(user_id, event_ts, k or self.top_k)
        items = rows.items
        arm = self.experiments.arm_label(user_id) if self.experiments is not None else None
        arts = [it.artwork_id for it in items]
        if self.artwork is not None:
            arts = self.artwork.choose_list(
                user_id, self.profile(user_id), [it.title_id for it in items], event_ts, arm
            )
        return {
            "v": SCORE_CONTRACT_VERSION,
            "user_id": user_id,
            "items": [
                {
                    "title_id": it.title_id,
                    "score": it.score,
                    "rank": r + 1,
                    "reasons": list(it.reasons),
                    "artwork_id": arts[r],
                }
                for r, it in enumerate(items)
            ],
            "continue_watching": [
                {
                    "title_id": it.title_id,
                    "progress": it.score,
                    "rank": r + 1,
                    "reasons": list(it.reasons),
                    "artwork_id": it.artwork_id,
                }
                for r, it in enumerate(rows.continue_watching)
            ],
            "model_version": self.models.model_version,
            "experiment_arm": arm,
            "generated_at": now_ms,
            "event_ts": event_ts,
        }
