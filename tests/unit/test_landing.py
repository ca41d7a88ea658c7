from exporter.landing import render_landing_page
from exporter.state import StateStore, TargetKey
from exporter.upstream import FunctionStats


def test_landing_page_lists_targets_and_escapes_everything() -> None:
    state = StateStore()
    evil = TargetKey("<script>alert(1)</script>", "f&g")
    ok = TargetKey("p", "ok")
    pending = TargetKey("p", "pending")
    state.set_targets([evil, ok, pending])
    state.record_success(ok, FunctionStats(), 1000.0)
    state.record_failure(evil, "forbidden", 1000.0, keep_values_for=1, drop_values=False)
    page = render_landing_page(state.snapshot(), "1m").decode()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "f&amp;g" in page
    assert '<tr class="down">' in page
    assert "forbidden" in page
    assert '<tr class="up"><td>p</td><td>ok</td><td>up</td><td>1970-01-01 00:16:40 UTC' in page
    assert "not polled yet" in page
    assert '<a href="/metrics">' in page
    assert "1 of 3 functions up" in page
