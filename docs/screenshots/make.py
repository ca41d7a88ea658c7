"""Takes the screenshots in docs/screenshots/ from a real run of the demo.

    .venv/bin/python docs/screenshots/make.py [--minutes 3]

Starts `mudbase-exporter --demo` (the simulator and the exporter) on loopback, Debian's
Prometheus scraping it every 5 s with the shipped rules (prometheus/mudbase-rules.yml, as they
are; only the scrape and evaluation intervals are shortened), waits `--minutes` for data, then
takes with Debian's headless chromium:
- status-page.png: the exporter's status page at `/`;
- dashboard-*.png: the Grafana dashboard's main per-function panels (success ratio, executions
  per minute, average execution time), one image each: the dashboard's own query with the
  variables set to match everything, drawn by Prometheus' graph page, since no Grafana server
  can be installed here (neither Debian nor PyPI has one).
Needs: apt-get install prometheus chromium. Takes `--minutes` (default 6, so that the rules'
5-minute windows fill) plus about 30 seconds.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.browser import screenshot  # noqa: E402
from tests.helpers import free_port, http_get, wait_for  # noqa: E402
from tests.system.stack import prometheus_config, require_binary, run_server  # noqa: E402

OUT = Path(__file__).resolve().parent
DASHBOARD = ROOT / "grafana" / "dashboards" / "mudbase-exporter.json"
PANELS = ("Success ratio", "Executions per minute", "Average execution time")
VARIABLES = {"$project": ".*", "$function": ".*", "$__rate_interval": "1m"}


@contextmanager
def demo() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(  # noqa: S603 - our own command line
        [sys.executable, "-m", "exporter", "--demo", f"--web.listen-address=127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(f"{url}/-/ready"), 30, "the demo to be ready", step=0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return http_get(url, timeout=1)[0] == 200
    except OSError:
        return False


@contextmanager
def prometheus(workdir: Path, target: str) -> Iterator[str]:
    config = prometheus_config(ROOT / "prometheus" / "mudbase-rules.yml", target, "127.0.0.1:9")
    config["global"].update(scrape_interval="5s", evaluation_interval="5s")
    del config["alerting"]  # no Alertmanager here: nothing to notify
    path = workdir / "prometheus.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        require_binary("prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with run_server(args, url, workdir / "prometheus.log"):
        yield url


def panel_queries() -> list[tuple[str, str]]:
    """(title, query) of the main panels, the dashboard's first query of each, variables set."""
    panels = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"]}
    found = []
    for title in PANELS:
        expr = next(p for t, p in panels.items() if t == title and p["type"] == "timeseries")
        query = expr["targets"][0]["expr"]
        for variable, value in VARIABLES.items():
            query = query.replace(variable, value)
        found.append((title, query))
    return found


def has_data(prometheus_url: str, query: str) -> bool:
    status, body = http_get(f"{prometheus_url}/api/v1/query?query={urllib.parse.quote(query)}")
    return status == 200 and bool(json.loads(body)["data"]["result"])


def graph_url(prometheus_url: str, queries: list[tuple[str, str]], minutes: int) -> str:
    params: dict[str, str] = {}
    for i, (_, query) in enumerate(queries):
        params |= {
            f"g{i}.expr": query,
            f"g{i}.tab": "0",
            f"g{i}.range_input": f"{minutes}m",
            f"g{i}.stacked": "0",
            f"g{i}.show_exemplars": "0",
        }
    return f"{prometheus_url}/graph?{urllib.parse.urlencode(params)}"


def image_name(title: str) -> str:
    return "dashboard-" + "-".join(title.lower().split()) + ".png"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=int, default=6, help="of data before the screenshots")
    args = parser.parse_args()
    queries = panel_queries()
    with (
        tempfile.TemporaryDirectory() as tmp,
        demo() as exporter,
        prometheus(Path(tmp), exporter.removeprefix("http://")) as prom,
    ):
        started = time.monotonic()
        for title, query in queries:
            wait_for(partial(has_data, prom, query), 120, f"data for {title}", step=2)
        time.sleep(max(0.0, args.minutes * 60 - (time.monotonic() - started)))
        screenshot(f"{exporter}/", OUT / "status-page.png", 1280, 720)
        for title, query in queries:
            url = graph_url(prom, [(title, query)], args.minutes)
            screenshot(url, OUT / image_name(title), 1280, 800, wait_ms=8000)
    for name in ["status-page.png", *(image_name(title) for title, _ in queries)]:
        print(f"{OUT / name}: {(OUT / name).stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
