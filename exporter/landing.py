"""The HTML landing page at `/`: every target's health at a glance. Everything is escaped."""

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape

from exporter import __version__
from exporter.state import TargetKey, TargetState

_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    ".up{color:#1a7f37}.down{color:#cf222e}.pending{color:#9a6700}"
)


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    moment = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{moment} ({max(0, round(now - timestamp))}s ago)"


def _health(state: TargetState) -> tuple[str, str]:
    if state.up is None:
        return "pending", "not polled yet"
    return ("up", "up") if state.up else ("down", "down")


def _row(state: TargetState, now: float) -> str:
    css, health = _health(state)
    cells = (
        state.key.project,
        state.key.function,
        health,
        _when(state.last_success, now),
        state.last_error_reason or "",
        _when(state.last_error_time, now) if state.last_error_time else "",
    )
    tds = "".join(f"<td>{escape(c)}</td>" for c in cells)
    return f'<tr class="{css}">{tds}</tr>'


def render_landing_page(targets: Mapping[TargetKey, TargetState], interval: str) -> bytes:
    now = time.time()
    rows = "\n".join(_row(state, now) for state in targets.values())
    up = sum(1 for s in targets.values() if s.up)
    html = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Mudbase Exporter</title>
<style>{_STYLE}</style></head>
<body><h1>Mudbase Exporter</h1>
<p>Version {escape(__version__)}. {up} of {len(targets)} functions up; polled every
{escape(interval)}.</p>
<p><a href="/metrics">Metrics</a> &middot; <a href="/-/healthy">Health</a> &middot;
<a href="/-/ready">Readiness</a></p>
<table><thead><tr><th>Project</th><th>Function</th><th>Health</th><th>Last success</th>
<th>Last error reason</th><th>Last error</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
    return html.encode("utf-8")
