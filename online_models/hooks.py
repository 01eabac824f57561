"""Install the optional artwork and experiment hooks on an engine from settings.

The worker calls ``install(engine, settings)`` once after building its engine
(one line in streams/worker/app.py; replay and tests call it the same way). With the
defaults (``REELSTREAM_ARTWORK_POLICY=off``, no ``REELSTREAM_EXPERIMENTS_FILE``)
it leaves the engine as it was: first artwork variant, null ``experiment_arm``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from online_models.engine import Engine


def install(
    engine: Engine,
    settings: Any,
    catalog_records: Iterable[Mapping[str, Any]] = (),
    decision_sink: Callable[[dict[str, Any]], None] | None = None,
) -> Engine:
    """Set ``engine.artwork`` and ``engine.experiments`` as ``settings`` ask.

    ``decision_sink`` receives each decision record (the worker sends them to
    ``settings.artwork_decisions_topic``); without one they collect in
    ``engine.artwork.log``.
    """
    if settings.artwork_policy != "off":
        from online_models.artwork import ArtworkConfig, ArtworkHook, ArtworkPolicy

        # Pooled by style where the catalog records name one (faster learning on a large
        # catalog); a variant without a style keeps a model of its own.
        policy = ArtworkPolicy(
            ArtworkConfig(mode=settings.artwork_policy, floor=settings.artwork_floor, pool="style")
        )
        policy.learn_styles(catalog_records)
        engine.artwork = ArtworkHook(policy, engine.catalog, log_sink=decision_sink)
    if settings.experiments_file:
        from online_models.experiment_live import LiveFold
        from online_models.experiments import Assigner

        engine.experiments = Assigner.from_file(settings.experiments_file)
        engine.experiments.cache_max = settings.user_cache
        engine.experiment_fold = LiveFold()
        if engine.artwork is not None:
            engine.artwork.enabled = artwork_switch(engine.experiments)
    return engine


def artwork_switch(assigner: Any) -> Callable[[str], bool] | None:
    """Per user: False when the user's arm says ``artwork_policy = "off"`` (None: no such arm)."""
    off_arms = {
        (e.id, a.name)
        for e in assigner.experiments.values()
        for a in e.arms
        if a.params.get("artwork_policy") == "off"
    }
    if not off_arms:
        return None

    def enabled(user_id: str) -> bool:
        return not any((e.id, a.name) in off_arms for e, a in assigner.assign(user_id).values())

    return enabled
