"""The one id pattern: ids from the outside become parts of Redis keys and log lines.

>>> is_valid_id("u-42"), is_valid_id("u 42"), is_valid_id("{u}")
(True, False, False)
"""

from __future__ import annotations

import re

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.match(value) is not None
