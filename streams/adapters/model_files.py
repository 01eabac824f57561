"""Reading a model file named by a setting (never by a request), with its checks.

The forecaster state (``REELSTREAM_FORECAST_STATE``) and the synopsis tagger
(``REELSTREAM_TAGGER_FILE``) are files an operator points the worker at. They are
read once, at start: the path must name a regular file (not a directory, FIFO or
device) below a size limit. What is inside is checked by the model's own decoder
(online_models/forecast.py, online_models/tagger.py), which never executes anything.

>>> read_model_file("/nonexistent/x.state", 10)
Traceback (most recent call last):
...
streams.adapters.model_files.ModelFileUnusable: no such file: x.state
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class ModelFileUnusable(OSError):
    """The configured path cannot be used; the message names the file, not its directory."""


def read_model_file(path: str, max_bytes: int) -> bytes:
    """The bytes of ``path``, checked to be a regular file of at most ``max_bytes``."""
    p = Path(path)
    name = p.name or path
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ModelFileUnusable(f"no such file: {name}") from None
    except OSError as exc:
        raise ModelFileUnusable(f"{name}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileUnusable(f"{name} is not a regular file")
    if st.st_size > max_bytes:
        raise ModelFileUnusable(f"{name} is {st.st_size} bytes; the limit is {max_bytes}")
    with open(p, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ModelFileUnusable(f"{name} grew past {max_bytes} bytes while read")
    return data
