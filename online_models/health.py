"""Model health for the worker's gauges: rolling ranker AUC / log loss and prequential hit rate.

* Ranker: AUC and log loss over the ranker's most recent ``window`` labelled
  examples (each predicted before it was learned, :class:`online_models.ranker.PrequentialStats`).
* Hit rate: for each fresh play, was the title in the top-K last served to that
  user (test-then-train on what users actually saw)? Rolling over ``window`` plays.

>>> h = ModelHealth(window=4)
>>> h.served("u", ["t1", "t2"])
>>> h.play("u", "t2"), h.play("u", "t9"), h.play("nobody", "t1")
(True, False, None)
>>> h.hit_rate()
0.5
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

from online_models.ranker import Ranker, auc, log_loss

SERVED_MAX = 20_000  # users whose last top-K is remembered (the worker: REELSTREAM_USER_CACHE)


class ModelHealth:
    def __init__(self, window: int = 5000, served_max: int = SERVED_MAX) -> None:
        self.window = window
        self.served_max = served_max
        self.last: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.hits: deque[bool] = deque(maxlen=window)

    def served(self, user_id: str, title_ids: list[str]) -> None:
        self.last[user_id] = frozenset(title_ids)
        self.last.move_to_end(user_id)
        if len(self.last) > self.served_max:
            self.last.popitem(last=False)

    def forget(self, user_id: str) -> None:
        """An expired user (streams/worker/expiry.py)."""
        self.last.pop(user_id, None)

    def play(self, user_id: str, title_id: str) -> bool | None:
        shown = self.last.get(user_id)
        if shown is None:
            return None
        hit = title_id in shown
        self.hits.append(hit)
        return hit

    def hit_rate(self) -> float:
        return sum(self.hits) / len(self.hits) if self.hits else math.nan

    def ranker(self, ranker: Ranker) -> tuple[float, float]:
        """(AUC, log loss) over the most recent ``window`` examples of both heads, by River's
        ``RollingROCAUC`` and ``LogLoss``; NaN while those examples hold one class only."""
        preds: list[float] = []
        labels: list[bool] = []
        for s in ranker.stats.values():
            p, y = s.tail(self.window)
            preds += p
            labels += y
        a, loss = auc(preds, labels), log_loss(preds, labels)
        return (math.nan if a is None else a), (math.nan if loss is None else loss)
