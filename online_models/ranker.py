"""The online ranker: River logistic regressions over candidate and behavioural features.

Two binary models learn from implicit labels, prequentially (each example is
predicted before it is learned, and the prediction feeds AUC and log loss):

* ``click``: impression -> play. A shown title that the user plays is 1, shown
  titles not played by the next request are 0. Plays of titles that were not
  shown are 1 too, with ``random_negatives`` unshown catalog titles as 0s, so the
  model also learns what the user picks from the whole catalog.
* ``watch``: play -> completion. A play is 1 when it becomes positive (see
  :mod:`online_models.labels`), 0 on an early abandon.

A head whose real labels hold one class only (a log without impressions has
no shown-and-skipped titles) abstains: it neither serves nor reports AUC or log
loss (:meth:`Ranker.active`). A candidate's score is the sum of the active
heads' logits, log P(play) + log P(complete | play) up to the normalisers.
Learning uses River's ``learn_one`` (about 6 us); scoring many candidates
reads the models' weights and does one matrix-vector product.

>>> r = Ranker(["x"], warmup=0)
>>> for _ in range(300):
...     r.learn("watch", {"x": 1.0}, True); r.learn("watch", {"x": 0.0}, False)
>>> r.logits(np.array([[1.0], [0.0]], dtype=np.float32)).argmax()
np.int64(0)
>>> r.metrics()["watch"]["auc"] > 0.9
True
"""

from __future__ import annotations

from collections import deque
from itertools import islice

import numpy as np
from river import linear_model, metrics, optim

from online_models.river_internals import set_linear_weights

MODELS = ("click", "watch")
# Predictions kept per head for AUC: a running worker's lists stay this long (and a
# checkpoint keeps as many); offline evaluations keep all of theirs (window None).
STATS_WINDOW = 10_000


def auc(scores: list[float] | np.ndarray, labels: list[bool] | np.ndarray) -> float | None:
    """ROC AUC over all the given predictions by River's rank-based ``RollingROCAUC`` with a
    window as long as the input (exact up to ties); None when one class is missing.

    >>> auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    >>> auc([0.9, 0.2], [1, 1]) is None
    True
    """
    y = [bool(v) for v in labels]
    pos = sum(y)
    if pos == 0 or pos == len(y):
        return None
    m = metrics.RollingROCAUC(window_size=len(y))
    for p, t in zip(np.asarray(scores, dtype=np.float64).tolist(), y, strict=True):
        m.update(t, p)
    return float(m.get())


def log_loss(preds: list[float], labels: list[bool]) -> float | None:
    """River's ``LogLoss`` over the given predictions; None when one class is missing
    (a loss over one class says nothing about ranking and rewards a constant)."""
    pos = sum(labels)
    if pos == 0 or pos == len(labels):
        return None
    m = metrics.LogLoss()
    for p, y in zip(preds, labels, strict=True):
        m.update(y, p)
    return float(m.get())


class PrequentialStats:
    """Predictions made before learning, with their labels; River metrics over them.

    ``log_loss`` is River's running ``LogLoss``; AUC is River's ``RollingROCAUC``
    over the kept predictions (:func:`auc`): the last ``window`` of them (all for
    None). Both are None (undefined) while only one class has been seen.

    >>> s = PrequentialStats(window=3)
    >>> for i in range(5):
    ...     s.add(i / 10, i % 2 == 1)
    >>> list(s.preds), s.n
    ([0.2, 0.3, 0.4], 5)
    """

    __slots__ = ("labels", "loss_metric", "n", "positives", "preds")

    def __init__(self, window: int | None = STATS_WINDOW) -> None:
        self.preds: deque[float] = deque(maxlen=window)
        self.labels: deque[bool] = deque(maxlen=window)
        self.loss_metric = metrics.LogLoss()
        self.n = 0
        self.positives = 0

    def add(self, p: float, y: bool) -> None:
        self.preds.append(p)
        self.labels.append(y)
        self.loss_metric.update(y, p)
        self.n += 1
        self.positives += int(y)

    @property
    def window(self) -> int | None:
        return self.preds.maxlen

    def tail(self, n: int) -> tuple[list[float], list[bool]]:
        """The last ``n`` kept predictions and their labels."""
        skip = max(0, len(self.preds) - n)
        return list(islice(self.preds, skip, None)), list(islice(self.labels, skip, None))

    @property
    def both_classes(self) -> bool:
        return 0 < self.positives < self.n

    @property
    def loss(self) -> float:
        """Summed log loss (what a checkpoint keeps)."""
        return float(self.loss_metric.get()) * self.n

    def summary(self) -> dict:
        both = self.both_classes
        return {
            "examples": self.n,
            "positives": self.positives,
            "auc": auc(list(self.preds), list(self.labels)) if both else None,
            "log_loss": float(self.loss_metric.get()) if both else None,
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
        self.stats_window: int | None = STATS_WINDOW
        self.stats = {name: PrequentialStats(self.stats_window) for name in MODELS}
        self.learned = dict.fromkeys(MODELS, 0)
        self.warmup = warmup
        self._w: tuple[tuple[int, tuple[str, ...]], np.ndarray, float] | None = None

    def learn(self, model: str, x: dict[str, float], y: bool, evaluate: bool = True) -> None:
        m = self.models[model]
        if evaluate:
            self.stats[model].add(m.predict_proba_one(x)[True], y)
        m.learn_one(x, y)
        self.learned[model] += 1

    def active(self, model: str) -> bool:
        """A head serves once warmed up on ``warmup`` examples *and* its real labels (the
        prequentially scored ones, not sampled negatives) hold both classes: a log without
        impressions gives the click head only positives, and it abstains."""
        return self.learned[model] >= self.warmup and self.stats[model].both_classes

    @property
    def ready(self) -> bool:
        return any(self.active(m) for m in MODELS)

    def weights(self) -> tuple[np.ndarray, float]:
        """Summed weights of the active heads, as a vector aligned with ``features``."""
        heads = tuple(m for m in MODELS if self.active(m))
        stamp = (sum(self.learned.values()), heads)
        if self._w is None or self._w[0] != stamp:
            w = np.zeros(len(self.features), dtype=np.float32)
            b = 0.0
            for m in (self.models[h] for h in heads):
                mw = m.weights
                w += np.array([mw.get(f, 0.0) for f in self.features], dtype=np.float32)
                b += m.intercept
            self._w = (stamp, w, b)
        return self._w[1], self._w[2]

    def logits(self, x: np.ndarray) -> np.ndarray:
        w, b = self.weights()
        return x @ w + b

    def keep_all_predictions(self) -> None:
        """Offline evaluation: AUC over every prediction, not the last ``STATS_WINDOW``."""
        self.stats_window = None
        for name, s in self.stats.items():
            kept = PrequentialStats(None)
            kept.preds.extend(s.preds)
            kept.labels.extend(s.labels)
            kept.loss_metric, kept.n, kept.positives = s.loss_metric, s.n, s.positives
            self.stats[name] = kept

    def metrics(self) -> dict:
        out = {name: self.stats[name].summary() for name in MODELS}
        pooled = PrequentialStats(None)
        for s in self.stats.values():
            if not s.both_classes:  # abstaining heads are not pooled
                continue
            for p, y in zip(s.preds, s.labels, strict=True):
                pooled.add(p, y)
        out["all"] = pooled.summary()
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
