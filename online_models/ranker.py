"""The online ranker: River logistic regressions over candidate and behavioural features.

Two binary models learn from implicit labels, prequentially (each example is
predicted before it is learned, and the prediction feeds AUC and log loss):

* ``click``: impression -> play. A shown title that the user plays is 1, shown
  titles not played by the next request are 0. Plays of titles that were not
  shown are 1 too, with ``random_negatives`` unshown catalog titles as 0s, so the
  model also learns what the user picks from the whole catalog.
* ``watch``: play -> completion. A play is 1 when it becomes positive (see
  :mod:`online_models.labels`), 0 on an early abandon.

A candidate's score is the sum of both logits, log P(play) + log P(complete | play)
up to the normalisers. Learning uses River's ``learn_one`` (about 6 us); scoring
many candidates reads the models' weights and does one matrix-vector product.

>>> r = Ranker(["x"], warmup=0)
>>> for _ in range(300):
...     r.learn("watch", {"x": 1.0}, True); r.learn("watch", {"x": 0.0}, False)
>>> r.logits(np.array([[1.0], [0.0]], dtype=np.float32)).argmax()
np.int64(0)
>>> r.metrics()["watch"]["auc"] > 0.9
True
"""

from __future__ import annotations

import math

import numpy as np
from river import linear_model, optim

from online_models.river_internals import set_linear_weights

MODELS = ("click", "watch")


def auc(scores: list[float] | np.ndarray, labels: list[bool] | np.ndarray) -> float | None:
    """Exact ROC AUC (ties count one half); None when one class is missing.

    >>> auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    r = np.arange(1, len(s) + 1, dtype=np.float64)
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        r[i : j + 1] = (i + j + 2) / 2.0
        i = j + 1
    ranks[order] = r
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


class PrequentialStats:
    """Predictions and labels seen before learning; AUC and log loss over them."""

    __slots__ = ("labels", "loss", "n", "preds")

    def __init__(self) -> None:
        self.preds: list[float] = []
        self.labels: list[bool] = []
        self.loss = 0.0
        self.n = 0

    def add(self, p: float, y: bool) -> None:
        p = min(max(p, 1e-7), 1 - 1e-7)
        self.preds.append(p)
        self.labels.append(y)
        self.loss += -math.log(p if y else 1 - p)
        self.n += 1

    def summary(self) -> dict:
        return {
            "examples": self.n,
            "positives": int(sum(self.labels)),
            "auc": auc(self.preds, self.labels),
            "log_loss": self.loss / self.n if self.n else None,
        }


class Ranker:
    def __init__(
        self, features: list[str], lr: float = 0.05, watch_lr: float = 0.1, warmup: int = 200
    ) -> None:
        self.features = list(features)
        rates = {"click": lr, "watch": watch_lr}
        self.models = {
            name: linear_model.LogisticRegression(optimizer=optim.SGD(rates[name]), l2=1e-5)
            for name in MODELS
        }
        self.stats = {name: PrequentialStats() for name in MODELS}
        self.learned = dict.fromkeys(MODELS, 0)
        self.warmup = warmup
        self._w: tuple[int, np.ndarray, float] | None = None

    def learn(self, model: str, x: dict[str, float], y: bool, evaluate: bool = True) -> None:
        m = self.models[model]
        if evaluate:
            self.stats[model].add(m.predict_proba_one(x)[True], y)
        m.learn_one(x, y)
        self.learned[model] += 1

    @property
    def ready(self) -> bool:
        return min(self.learned.values()) >= self.warmup

    def weights(self) -> tuple[np.ndarray, float]:
        """Summed weights of both models, as a vector aligned with ``features``."""
        stamp = sum(self.learned.values())
        if self._w is None or self._w[0] != stamp:
            w = np.zeros(len(self.features), dtype=np.float32)
            b = 0.0
            for m in self.models.values():
                mw = m.weights
                w += np.array([mw.get(f, 0.0) for f in self.features], dtype=np.float32)
                b += m.intercept
            self._w = (stamp, w, b)
        return self._w[1], self._w[2]

    def logits(self, x: np.ndarray) -> np.ndarray:
        w, b = self.weights()
        return x @ w + b

    def metrics(self) -> dict:
        out = {name: self.stats[name].summary() for name in MODELS}
        preds = [p for s in self.stats.values() for p in s.preds]
        labels = [y for s in self.stats.values() for y in s.labels]
        n = sum(s.n for s in self.stats.values())
        out["all"] = {
            "examples": n,
            "positives": int(sum(labels)),
            "auc": auc(preds, labels),
            "log_loss": sum(s.loss for s in self.stats.values()) / n if n else None,
        }
        return out

    def state(self) -> dict:
        return {
            name: {
                "weights": np.array(
                    [m.weights.get(f, 0.0) for f in self.features], dtype=np.float64
                ),
                "intercept": float(m.intercept),
                "learned": self.learned[name],
            }
            for name, m in self.models.items()
        }

    def load(self, st: dict) -> None:
        for name, m in self.models.items():
            s = st[name]
            w = np.asarray(s["weights"], dtype=np.float64)
            if w.shape != (len(self.features),):
                raise ValueError(f"ranker {name}: {w.shape} weights for {len(self.features)}")
            set_linear_weights(
                m, zip(self.features, w.tolist(), strict=True), float(s["intercept"])
            )
            self.learned[name] = int(s["learned"])
        self._w = None
