"""The status page in a real browser (Debian's chromium, headless): the numbers render, a
reload shows what changed upstream, and markup injected through Mudbase's data stays text."""

import re
from pathlib import Path

from tests.browser import dump_dom
from tests.helpers import SIM_TOKEN, run_exporter, run_simulator, wait_for

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'
CONFIG = """\
mudbase: {{url: "{url}", token: {token}, timeout: 500ms}}
interval: 1s
targets:
  - project: shop
    functions: [steady, broken]
  - project: web
    functions: all
"""


def row(dom: str, function: str) -> str:
    """The text of the table row of `function`, tags stripped."""
    for tr in re.findall(r"<tr>(.*?)</tr>", dom, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        if len(cells) > 2 and re.sub(r"<br>.*", "", cells[2]) == function:
            return re.sub(r"<[^>]+>", " ", tr)
    raise AssertionError(f"no row for {function}")


def test_status_page_renders_updates_on_reload_and_escapes(tmp_path: Path) -> None:
    with run_simulator() as simulator:
        simulator.put_function("shop", "steady", initial_executions=1000, failure_ratio=0.1)
        simulator.put_function("shop", "broken", initial_executions=10)
        simulator.set_fault("shop", "broken", "status", status=500)
        simulator.put_function("web", "evil", name=HOSTILE, initial_executions=5)
        config = tmp_path / "config.yaml"
        config.write_text(CONFIG.format(url=simulator.url, token=SIM_TOKEN))
        with run_exporter(config) as exporter:
            stats = simulator.stats("shop", "steady")
            dom = ""

            def two_up_one_failing() -> bool:
                # a poll every second, a 500 ms timeout: on a loaded machine a function can
                # be stale or time out for a moment, so the page is read until it is not
                nonlocal dom
                dom = dump_dom(f"{exporter.url}/")
                up = "3 functions: <b>2</b> up, <b" in dom
                return up and re.search(r">1</b> failing", dom) is not None

            wait_for(two_up_one_failing, 20, "the page to show 2 up and 1 failing", step=0.2)
            assert "<title>Mudbase Exporter</title>" in dom  # no script ran
            first = dom.index("<tbody>")
            assert dom.index("broken", first) < dom.index("steady", first)  # worst first
            broken = row(dom, "broken")
            assert "failing" in broken
            assert "server_error" in broken
            assert "HTTP 500" in broken
            steady = row(dom, "steady")
            assert f"{stats['totalExecutions']:,}" in steady
            assert f"{stats['successRate']:.2f}%" in steady
            # the hostile name arrived through the list endpoint and stayed text
            assert "<script" not in dom
            assert "<img" not in dom
            assert "&lt;script&gt;document.title=" in dom
            assert f"<code>{simulator.url}</code>" in dom
            assert SIM_TOKEN not in dom

            simulator.put_function("shop", "steady", initial_executions=2500, failure_ratio=0.1)
            simulator.set_fault("shop", "steady", "status", status=503)
            # a 1 s interval leaves the budget no room for the retries of two failing
            # functions: a poll whose first try got no turn in time fails as a timeout, so
            # the page is read until a poll got Mudbase's 503
            wait_for(
                lambda: "HTTP 503" in row(dump_dom(f"{exporter.url}/?q=shop/"), "steady"),
                20,
                "the page to show steady failing with Mudbase's 503 after a reload",
                step=0.2,
            )
            dom = dump_dom(f"{exporter.url}/?q=shop/")
            assert re.search(r">2</b> failing", dom)
            assert "failing" in row(dom, "steady")
            assert "evil" not in dom.split("<tbody>", 1)[1]  # filtered out


WHY_CONFIG = """\
mudbase: {{url: "{url}", token: {token}, timeout: 500ms}}
interval: 1s
targets:
  - project: pay
    functions: [charge, calm]
"""


def test_a_failing_functions_row_says_why_and_its_recent_ratio_ranks_it(tmp_path: Path) -> None:
    with run_simulator() as simulator:
        # charge: fine for months (99%), failing now; calm: failed half its history, fine now
        simulator.put_function(
            "pay", "charge", rate_per_minute=600, failure_ratio=0.01, initial_executions=10_000
        )
        simulator.put_function(
            "pay", "calm", rate_per_minute=600, failure_ratio=0.5, initial_executions=10_000
        )
        simulator.put_function("pay", "calm", failure_ratio=0.0)
        config = tmp_path / "config.yaml"
        config.write_text(WHY_CONFIG.format(url=simulator.url, token=SIM_TOKEN))
        with run_exporter(config) as exporter:
            simulator.put_function("pay", "charge", failure_ratio=0.7, error="Timeout")
            wait_for(
                lambda: "Timeout" in row(dump_dom(f"{exporter.url}/"), "charge"),
                30,
                "the page to show charge's Timeout",
                step=0.2,
            )
            wait_for(
                lambda: _first_row(dump_dom(f"{exporter.url}/")) == "charge",
                30,
                "charge, failing now, to rank above calm, whose failures are history",
                step=0.2,
            )
            dom = dump_dom(f"{exporter.url}/")
            charge = row(dom, "charge")
            assert re.search(r"Timeout\s+http, (trigger|manual|api_key|cron)\s+\d+s ago", charge)
            recent, lifetime = re.findall(r"(\d+\.\d\d)%", charge)[:2]
            assert float(recent) < 90 < float(lifetime)  # recent ratio beside the lifetime one
            assert re.search(r"\d+\.\d\d%\s+of \d+", charge)  # with the executions it counts
            assert re.search(r"Executions counted from logs answers: <b>\d+\.\d%</b>", dom)


def _first_row(dom: str) -> str:
    body = dom.split("<tbody>", 1)[1]
    first: str = re.findall(r"<tr><td>.*?</td><td>.*?</td><td>(.*?)</td>", body, re.S)[0]
    return first
