"""Prometheus-style durations: `30s`, `1m`, `1h30m`, `500ms`.

The grammar is Prometheus' own (model.ParseDuration): units from largest to smallest, each at
most once, integers only. No PyPI package implements it (pytimeparse lacks `ms` and `y` and
accepts forms Prometheus rejects, such as `1.5s`), so this is the one small parser we own.
"""

import re

_UNITS: dict[str, float] = {
    "y": 365 * 86400,
    "w": 7 * 86400,
    "d": 86400,
    "h": 3600,
    "m": 60,
    "s": 1,
    "ms": 0.001,
}
_PATTERN = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
    r"(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; ValueError naming the accepted form otherwise."""
    match = _PATTERN.match(text)
    if not text or match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a Prometheus duration such as 30s, 1m, 1h30m or 500ms"
        )
    return sum(int(value) * _UNITS[unit] for unit, value in match.groupdict().items() if value)


def format_duration(seconds: float) -> str:
    """The shortest Prometheus spelling of a number of seconds (`90` -> `1m30s`)."""
    if seconds == 0:
        return "0s"
    millis = round(seconds * 1000)
    parts = []
    for unit in ("y", "w", "d", "h", "m", "s", "ms"):
        size = round(_UNITS[unit] * 1000)
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
