"""/metrics rendering: functions once per state change, self-metrics on every scrape."""

import gzip
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.exposition import CachedExposition
from tests.helpers import wait_for


class Counting(Collector):
    def __init__(self, name: str) -> None:
        self.name = name
        self.collects = 0

    def collect(self) -> Iterator[Metric]:
        self.collects += 1
        yield GaugeMetricFamily(self.name, "test", value=self.collects)


def setup() -> tuple[CachedExposition, Counting, Counting, list[int]]:
    functions, live = Counting("functions_part"), Counting("live_part")
    function_registry, live_registry = CollectorRegistry(), CollectorRegistry()
    function_registry.register(functions)
    live_registry.register(live)
    generation = [0]
    return (
        CachedExposition(
            lambda: [generate_latest(function_registry)], lambda: generation[0], live_registry
        ),
        functions,
        live,
        generation,
    )


def test_function_part_renders_once_per_generation_and_live_part_every_time() -> None:
    exposition, functions, live, generation = setup()
    functions.collects = live.collects = 0
    bodies = [exposition.body() for _ in range(3)]
    assert functions.collects == 1
    assert live.collects == 3
    assert b"live_part 3.0" in bodies[2]
    assert b"functions_part 1.0" in bodies[2]
    generation[0] += 1
    assert b"functions_part 2.0" in exposition.body()


def test_gzip_is_two_members_that_decode_to_the_plain_body() -> None:
    exposition, *_ = setup()
    plain = exposition.body()
    zipped = exposition.body(gzipped=True)
    decoded = gzip.decompress(zipped)
    assert decoded.split(b"live_part")[0] == plain.split(b"live_part")[0]
    assert b"# TYPE live_part gauge" in decoded


def test_background_renderer_follows_changes_without_rendering_on_scrapes() -> None:
    exposition, functions, _, generation = setup()
    exposition._gap = 0.01
    exposition.start()
    try:
        exposition.body()
        renders = functions.collects
        for _ in range(20):
            exposition.body()
        assert functions.collects == renders  # scrapes never render
        generation[0] += 1
        exposition.notify()
        wait_for(
            lambda: b"functions_part %d.0" % (renders + 1) in exposition.body(),
            5,
            "the renderer to pick up the change",
        )
    finally:
        exposition.stop()
