"""A ``reelstream worker`` with experimental Faust knobs, for ``reelstream bench --exp-*``.

Some levers worth measuring are not Faust settings (its group consumer's
``fetch_max_wait_ms`` is hard-coded to 1500 ms) or are not exposed by
streams/worker/app.py (``cython_optimizations``). This entry point patches them in
from ``REELSTREAM_EXP_*`` variables, then runs the ordinary worker, so a
lever can be measured before anyone changes the worker for it. Never used in
production.

    REELSTREAM_EXP_FETCH_MAX_WAIT_MS=100 python -m streams.tools.bench_experiments
"""

from __future__ import annotations

import os
import sys
from typing import Any


def apply(env: dict[str, str]) -> list[str]:
    """Patch what ``env`` asks for; returns the names of the experiments applied."""
    applied = []
    fetch_wait = env.get("REELSTREAM_EXP_FETCH_MAX_WAIT_MS")
    if fetch_wait:
        import aiokafka

        original = aiokafka.AIOKafkaConsumer.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("group_id"):  # Faust's group consumer, not the catalog follower
                kwargs["fetch_max_wait_ms"] = int(fetch_wait)
            original(self, *args, **kwargs)

        aiokafka.AIOKafkaConsumer.__init__ = init  # type: ignore[method-assign]
        applied.append(f"fetch_max_wait_ms={int(fetch_wait)}")
    if env.get("REELSTREAM_EXP_CYTHON_OPTIMIZATIONS"):
        import faust

        app_init = faust.App.__init__

        def init_app(self: Any, *args: Any, **kwargs: Any) -> None:
            kwargs["cython_optimizations"] = True
            app_init(self, *args, **kwargs)

        faust.App.__init__ = init_app  # type: ignore[method-assign]
        applied.append("cython_optimizations")
    return applied


def main() -> int:
    applied = apply(dict(os.environ))
    print(f"reelstream bench experiments: {', '.join(applied) or 'none'}", file=sys.stderr)
    from streams.cli import main as cli_main

    return cli_main(["worker"])


if __name__ == "__main__":
    sys.exit(main())
