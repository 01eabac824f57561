"""Local time of an event from its country: hour of day and weekday, without a tz database.

Why a fixed table: the event contract carries a country, not a time zone, and the
hot path must stay cheap. Each country maps to the UTC offset (minutes, standard
time, no daylight saving) of its most populous zone, so ``US`` is UTC-5 and
``BR`` is UTC-3. An hour's error during summer time or in a country's minor zones
is accepted; an unknown or missing country gives ``None`` (no local context).

>>> local_hour_weekday(1_767_571_200_000, "GB")   # 2026-01-05 00:00 UTC, a Monday
(0, 0)
>>> local_hour_weekday(1_767_571_200_000, "US")   # 19:00 on the Sunday before
(19, 6)
>>> local_hour_weekday(1_767_571_200_000, "XX") is None
True
"""

from __future__ import annotations

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# ISO 3166 alpha-2 -> UTC offset in minutes (standard time of the most populous zone).
UTC_OFFSET_MIN: dict[str, int] = {
    "US": -300, "CA": -300, "MX": -360, "BR": -180, "AR": -180, "CL": -240, "CO": -300,
    "PE": -300, "GB": 0, "IE": 0, "PT": 0, "IS": 0, "FR": 60, "DE": 60, "ES": 60,
    "IT": 60, "NL": 60, "BE": 60, "CH": 60, "AT": 60, "SE": 60, "NO": 60, "DK": 60,
    "PL": 60, "CZ": 60, "HU": 60, "FI": 120, "GR": 120, "RO": 120, "UA": 120, "IL": 120,
    "EG": 120, "ZA": 120, "TR": 180, "RU": 180, "SA": 180, "KE": 180, "AE": 240,
    "PK": 300, "IN": 330, "BD": 360, "TH": 420, "VN": 420, "ID": 420, "CN": 480,
    "SG": 480, "MY": 480, "PH": 480, "TW": 480, "HK": 480, "JP": 540, "KR": 540,
    "AU": 600, "NZ": 720, "NG": 60,
}  # fmt: skip


def local_ms(ts: int, country: str | None) -> int | None:
    """``ts`` shifted to the country's wall clock (still epoch-based), or None."""
    if country is None:
        return None
    off = UTC_OFFSET_MIN.get(country)
    if off is None:
        return None
    return ts + off * 60_000


def local_hour_weekday(ts: int, country: str | None) -> tuple[int, int] | None:
    """(hour 0-23, weekday 0=Monday..6=Sunday) in the country's local time, or None."""
    loc = local_ms(ts, country)
    if loc is None:
        return None
    return (loc // HOUR_MS) % 24, (loc // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday


def event_context(ev: dict, country: str | None = None) -> dict[str, object]:
    """Context of one event: local hour and weekday (when the country allows) and device.

    ``country`` is the fallback when the event has none (the user's last known one).

    >>> event_context({"ts": 1_767_571_200_000, "country": "JP", "device": "tv"})
    {'hour': 9, 'weekday': 0, 'device': 'tv'}
    """
    hw = local_hour_weekday(ev["ts"], ev.get("country") or country)
    return {
        "hour": hw[0] if hw else None,
        "weekday": hw[1] if hw else None,
        "device": ev.get("device"),
    }
