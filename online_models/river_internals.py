"""The one private River attribute this project writes: a linear model's weight vector.

River's linear models show their weights read-only (``weights`` returns a copy), and
River's own way to persist a model is pickle, which a checkpoint read from Kafka must
never execute. Restoring a checkpoint and merging peers' ranker weights therefore write
``_weights`` here, and only here; tests/unit/test_river_internals.py fails when a River
upgrade changes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def set_linear_weights(model: Any, items: Iterable[tuple[str, float]], intercept: float) -> None:
    """Overwrite a River linear model's weights for the given features, and its intercept."""
    weights = model._weights
    for feature, value in items:
        weights[feature] = value
    model.intercept = intercept
