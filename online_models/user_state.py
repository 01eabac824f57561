"""The models' part of a viewer's record: what the recommender keeps per user.

It lives in the user's row (``UserProfile.model``, features/user_profile.py) so that
the profile table's changelog is the one durability mechanism for everything keyed
by user: a restart or a hand-over reads it back with the row, nothing else.

Title references are catalog rows of the process (``TitleIndex``); the stored form
names titles by id, so a row written by one worker reads correctly in another whose
catalog is numbered differently. The stored form is plain JSON types (the table's
codec is JSON).

>>> st = UserState(ids=["a", "b", "c"])
>>> st.recent, st.positives, st.mf_n = [2, 0], {2: 50}, 3
>>> d = st.to_dict()
>>> d["recent"], d["positives"]
(['c', 'a'], {'c': 50})
>>> back = UserState.from_dict(d, {"a": 5, "c": 7}, n_features=4)
>>> back.recent, back.positives, back.mf_n
([7, 5], {7: 50}, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT = 1


class UserStateError(ValueError):
    """A stored model state that cannot be read (the row's model part restarts empty)."""


@dataclass(slots=True)
class UserState:
    """Model-side state of one user (the feature profile is the rest of the row)."""

    recent: list[int] = field(default_factory=list)  # positive watches, most recent first
    sequence: list[int] = field(default_factory=list)  # fresh plays, most recent first
    positives: dict[int, int] = field(default_factory=dict)  # title index -> ts
    plays: int = 0
    completes: int = 0
    abandons: int = 0
    pauses: int = 0
    skips: int = 0
    episode_plays: int = 0
    watched_s: float = 0.0
    device: str | None = None
    # Shown titles of the last request -> feature row, None until needed (impression_rows).
    impressions: dict[int, np.ndarray | None] = field(default_factory=dict)
    impression_ts: int = 0
    impression_ctx: Any = None  # the UserContext the pending rows are built from
    playing: dict[int, np.ndarray] = field(default_factory=dict)
    last_pos: dict[int, float] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)  # title index -> last play ts
    liked: dict[str, float] = field(default_factory=dict)  # tag -> positive viewings
    disliked: dict[str, float] = field(default_factory=dict)  # tag -> early abandons
    mf: np.ndarray | None = None  # the factorisation's user vector
    mf_n: int = 0  # examples the vector has learned
    # The process's title numbering (TitleIndex.ids, shared, append-only): how rows
    # become ids when the record is written.
    ids: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        ids = self.ids

        def by_id(d: dict[int, Any]) -> dict[str, Any]:
            return {ids[i]: v for i, v in d.items()}

        return {
            "v": FORMAT,
            "recent": [ids[i] for i in self.recent],
            "sequence": [ids[i] for i in self.sequence],
            "positives": by_id(self.positives),
            "counts": [
                self.plays,
                self.completes,
                self.abandons,
                self.pauses,
                self.skips,
                self.episode_plays,
            ],
            "watched_s": self.watched_s,
            "device": self.device,
            # Pending impressions keep their titles; their rows are rebuilt after a read.
            "impressions": [ids[i] for i in self.impressions],
            "impression_ts": self.impression_ts,
            "playing": {ids[i]: row.tolist() for i, row in self.playing.items()},
            "last_pos": by_id(self.last_pos),
            "seen": by_id(self.seen),
            "liked": self.liked,
            "disliked": self.disliked,
            "mf": self.mf.tolist() if self.mf is not None else None,
            "mf_n": self.mf_n,
        }

    @classmethod
    def from_dict(
        cls, d: Any, index: dict[str, int], n_features: int, mf_k: int | None = None
    ) -> UserState:
        """Read a stored state; titles the catalog no longer has are dropped."""
        if not isinstance(d, dict) or d.get("v") != FORMAT:
            raise UserStateError("not a stored user state of this format")
        try:
            st = cls()
            st.recent = [index[t] for t in d["recent"] if t in index]
            st.sequence = [index[t] for t in d["sequence"] if t in index]
            st.positives = {index[t]: int(v) for t, v in d["positives"].items() if t in index}
            (
                st.plays,
                st.completes,
                st.abandons,
                st.pauses,
                st.skips,
                st.episode_plays,
            ) = (int(v) for v in d["counts"])
            st.watched_s = float(d["watched_s"])
            st.device = d["device"] if isinstance(d["device"], str) else None
            st.impressions = {index[t]: None for t in d["impressions"] if t in index}
            st.impression_ts = int(d["impression_ts"])
            for t, row in d["playing"].items():
                x = np.asarray(row, dtype=np.float32)
                if x.shape != (n_features,):
                    raise UserStateError(f"a playing row of shape {x.shape}")
                if t in index:
                    st.playing[index[t]] = x
            st.last_pos = {index[t]: float(v) for t, v in d["last_pos"].items() if t in index}
            st.seen = {index[t]: int(v) for t, v in d["seen"].items() if t in index}
            st.liked = {str(k): float(v) for k, v in d["liked"].items()}
            st.disliked = {str(k): float(v) for k, v in d["disliked"].items()}
            if d["mf"] is not None:
                p = np.asarray(d["mf"], dtype=np.float32)
                if p.ndim != 1 or (mf_k is not None and p.shape != (mf_k,)):
                    raise UserStateError(f"an MF vector of shape {p.shape}")
                st.mf = p
            st.mf_n = int(d["mf_n"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserStateError(f"bad stored user state ({exc!r})") from None
        return st
