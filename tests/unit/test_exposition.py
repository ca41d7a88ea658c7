"""/metrics rendering: functions once per state change, self-metrics on every scrape, gzip
from deflate segments kept per chunk, plain answers written piece by piece."""

import gzip
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence

import pytest
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import collector, gzipstream
from exporter import exposition as exposition_module
from exporter.collector import UNIT_FUNCTIONS, FunctionRenderer
from exporter.exposition import SELF_METRICS_MAX_AGE, CachedExposition
from exporter.gzipstream import Chunk, SegmentCache
from exporter.httpwire import Connection, _grouped
from exporter.state import StateStore, TargetState
from exporter.targets import FunctionInfo, FunctionSettings, TargetKey
from exporter.upstream import FunctionStats
from tests.helpers import FakeTime, first_gzip_member, wait_for


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
            lambda: [[generate_latest(function_registry)]], lambda: generation[0], live_registry
        ),
        functions,
        live,
        generation,
    )


class CountingCompressor:
    """gzipstream.segment, remembering every chunk it compressed."""

    def __init__(self) -> None:
        self.compressed: list[Chunk] = []

    def __call__(self, chunk: Chunk) -> bytes:
        self.compressed.append(chunk)
        return gzipstream.segment(chunk)


def project_state(projects: dict[str, int]) -> StateStore:
    """Projects with this many functions each, every function polled once."""
    state = StateStore()
    state.set_targets({}, discovered_projects=list(projects))
    settings = FunctionSettings(slo_objective=0.99)
    for project, count in projects.items():
        found = {
            TargetKey(project, f"fn{i}"): (settings, FunctionInfo(f"fn {i}", "http", True))
            for i in range(count)
        }
        state.sync_project(project, found)
        for key in found:
            state.record_success(key, FunctionStats(total_executions=7), now=1000.0)
    return state


def static_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("static_gauge", "test", ["kind"], registry=registry).labels("a").set(1)
    return registry


def test_function_part_renders_once_per_generation_and_self_metrics_once_while_fresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeTime()
    monkeypatch.setattr(exposition_module, "time", clock)
    exposition, functions, live, generation = setup()
    functions.collects = live.collects = 0
    bodies = [exposition.body() for _ in range(3)]
    assert (functions.collects, live.collects) == (1, 1)
    assert b"functions_part 1.0" in bodies[2]
    assert b"live_part 1.0" in bodies[2]
    clock.now += SELF_METRICS_MAX_AGE + 0.1
    assert b"live_part 2.0" in exposition.body()  # too old: collected on the scrape
    exposition.self_metrics_changed()
    assert b"live_part 3.0" in exposition.body()  # changed (a reload): collected at once
    generation[0] += 1
    assert b"functions_part 2.0" in exposition.body()
    assert (functions.collects, live.collects) == (2, 3)


@pytest.mark.parametrize("crc32_combine", ["zlib's", "none: the text is read again"])
def test_gzip_body_is_one_member_that_decodes_to_exactly_the_plain_body(
    crc32_combine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if crc32_combine != "zlib's":
        monkeypatch.setattr(gzipstream, "_crc32_combine", None)
    state = project_state({"a": 3, "b": UNIT_FUNCTIONS, "c": 2})
    exposition = CachedExposition(
        FunctionRenderer(state).render_parts, lambda: state.generation, static_registry()
    )
    for _ in range(2):  # a first render, then one after a change
        plain = exposition.body()
        zipped = exposition.body(gzipped=True)
        assert gzip.decompress(zipped) == plain  # the trailer's CRC-32 and length are checked
        assert first_gzip_member(zipped) == plain  # readers of the first member read it all
        assert plain.endswith(generate_latest(static_registry()))
        assert b'mudbase_function_up{function="fn0",project="b"} 1.0' in plain
        state.record_failure(TargetKey("b", "fn7"), "timeout", 2.0, 60, drop_values=False)


def functions_in(chunk: Chunk) -> set[bytes]:
    """The functions whose lines a chunk holds (by their labels: project/function)."""
    return {
        b"/".join(match.group(2, 1))
        for piece in chunk
        for match in re.finditer(rb'function="([^"]*)"[^\n]*project="([^"]*)"', piece)
    }


def up_chunks(chunks: Sequence[Chunk]) -> list[Chunk]:
    """The chunks of mudbase_function_up."""
    return [chunk for chunk in chunks if any(b"mudbase_function_up{" in p for p in chunk)]


def test_chunks_hold_about_a_unit_of_functions_whatever_the_projects() -> None:
    """Small projects share chunks and a big project is cut into several, so that one change
    costs a unit, not a project; a project of about a unit's size is a chunk of its own."""
    small = {f"s{i:03d}": 1 for i in range(3 * UNIT_FUNCTIONS)}
    projects = {**small, "big": 10 * UNIT_FUNCTIONS, "mid0": UNIT_FUNCTIONS, "mid1": 80}
    chunks = up_chunks(FunctionRenderer(project_state(projects)).render_parts())
    counts = [len(functions_in(chunk)) for chunk in chunks]
    assert sum(counts) == sum(projects.values())
    assert all(3 * UNIT_FUNCTIONS // 4 <= count <= 2 * UNIT_FUNCTIONS for count in counts[:-1])
    mid1 = {f"mid1/fn{i}".encode() for i in range(80)}
    assert mid1 in [functions_in(chunk) for chunk in chunks]


def test_one_change_in_a_big_project_renders_and_compresses_about_a_unit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = project_state({"big": 20 * UNIT_FUNCTIONS, "small": 3})
    renderer, compressor = FunctionRenderer(state), CountingCompressor()
    exposition = CachedExposition(
        renderer.render_parts,
        lambda: state.generation,
        static_registry(),
        segments=SegmentCache(compressor),
    )
    first = exposition.body(gzipped=True)
    rendered: list[TargetKey] = []
    render_function = collector._render

    def counted(target: TargetState) -> tuple[str, ...]:
        rendered.append(target.key)
        return render_function(target)

    monkeypatch.setattr(collector, "_render", counted)
    compressor.compressed.clear()
    state.record_success(TargetKey("big", "fn1517"), FunctionStats(total_executions=8), now=2.0)
    zipped = exposition.body(gzipped=True)
    assert TargetKey("big", "fn1517") in rendered
    assert len(rendered) <= 2 * UNIT_FUNCTIONS  # its unit, not its project of 2,000
    assert (
        gzip.decompress(zipped)
        == exposition.body()
        == FunctionRenderer(state).render() + generate_latest(static_registry())
    )
    assert 0 < len(compressor.compressed) <= len(collector.FAMILIES)
    recompressed = set().union(*map(functions_in, compressor.compressed))
    assert b"big/fn1517" in recompressed
    assert len(recompressed) <= 2 * UNIT_FUNCTIONS
    assert gzip.decompress(first) != gzip.decompress(zipped)
    compressor.compressed.clear()
    exposition.body(gzipped=True)
    assert compressor.compressed == []  # nothing changed, nothing compressed


def test_a_function_added_to_a_big_project_compresses_the_chunks_near_it_only() -> None:
    state = project_state({"big": 50 * UNIT_FUNCTIONS})
    compressor = CountingCompressor()
    exposition = CachedExposition(
        FunctionRenderer(state).render_parts,
        lambda: state.generation,
        static_registry(),
        segments=SegmentCache(compressor),
    )
    exposition.body(gzipped=True)
    compressor.compressed.clear()
    added = TargetKey("big", "fn2500a")
    info = FunctionInfo("added", "http", True)
    found = {
        key: (target.settings, target.info or info) for key, target in state.snapshot().items()
    }
    state.sync_project("big", {**found, added: (FunctionSettings(0.99), info)})
    assert gzip.decompress(exposition.body(gzipped=True)) == exposition.body()
    recompressed = set().union(*map(functions_in, compressor.compressed))
    assert b"big/fn2500a" in recompressed
    assert len(recompressed) <= 3 * 2 * UNIT_FUNCTIONS  # a few units, not 5,000 functions


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


class ToldJustAfterATimeout(threading.Event):
    """The renderer's wake-up event, with a change told in the instant after one of its waits
    timed out (before the renderer goes on): a poll that ends as the once-a-second refresh
    wakes it."""

    def __init__(self, tell: Callable[[], None]) -> None:
        super().__init__()
        self.tell: Callable[[], None] | None = tell

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        if not woken and self.tell is not None:
            tell, self.tell = self.tell, None
            tell()
        return woken


def test_a_change_told_just_after_the_renderer_timed_out_is_rendered() -> None:
    exposition, functions, _, generation = setup()
    exposition.start()
    try:
        exposition.notify()  # generation 0: rendered, then the renderer waits with a timeout
        wait_for(lambda: exposition.rendered_generation() == 0, 5, "the first render")

        def change() -> None:
            generation[0] += 1
            exposition.notify()

        exposition._changed = ToldJustAfterATimeout(change)
        wait_for(lambda: exposition.rendered_generation() == 1, 5, "the change to be rendered")
        assert functions.collects == 2
    finally:
        exposition.stop()


def test_the_renderer_collects_the_self_metrics_so_that_scrapes_send_them_from_memory() -> None:
    exposition, _, live, _ = setup()
    exposition.start()
    try:
        wait_for(lambda: live.collects >= 2, 5, "the renderer to collect the self-metrics")
        collected = live.collects
        bodies = [exposition.body() for _ in range(20)]
        assert live.collects - collected <= 1  # a refresh may land meanwhile; scrapes collect none
        assert all(b"live_part" in body for body in bodies)
        wait_for(  # collected again every second, so never older than that
            lambda: b"live_part %d.0" % (collected + 1) in exposition.body(), 5, "a refresh"
        )
    finally:
        exposition.stop()
    stale = live.collects
    wait_for(  # with the renderer stopped, a scrape collects once the collection is too old
        lambda: b"live_part %d.0" % (stale + 1) in exposition.body(), 5, "a scrape's own collection"
    )


def receive_all(sock: socket.socket, into: bytearray) -> None:
    while chunk := sock.recv(1 << 16):
        into += chunk


def test_pieces_arrive_whole_and_in_order_over_a_socket() -> None:
    pieces: Sequence[bytes] = [
        b"",
        *(bytes([i % 256]) * (i * 97) for i in range(1, 700)),  # more than one sendmsg batch
        b"x" * (8 << 20),  # more than the socket buffer: partial sends
        b"end",
    ]
    sender, receiver = socket.socketpair()
    received = bytearray()
    reader = threading.Thread(target=receive_all, args=(receiver, received))
    reader.start()
    with sender, receiver:
        Connection(sender).write_pieces(pieces)
        sender.shutdown(socket.SHUT_WR)
        reader.join(timeout=30)
    assert bytes(received) == b"".join(pieces)


def test_tls_writes_join_only_small_pieces() -> None:
    big = b"b" * 100
    assert list(_grouped([b"a", b"a", big, b"c", b"c", b"c"], 3)) == [b"aa", big, b"ccc"]


class HeldInTheRenderer(Collector):
    """Holds the renderer thread inside each of its collections until the test lets it go;
    a scrape (the test's own thread) passes straight through."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.go_on = threading.Semaphore(0)

    def collect(self) -> Iterator[Metric]:
        if threading.current_thread() is not threading.main_thread():
            self.entered.release()
            assert self.go_on.acquire(timeout=10), "the test never let the renderer go on"
        yield from ()


def test_a_collection_that_started_before_a_reload_never_replaces_what_the_reload_shows() -> None:
    """The renderer's collection of the self-metrics began, then a reload changed them and
    answered; the older text it then kept must not be what the next scrape sends."""
    registry = CollectorRegistry()
    reloaded = Gauge("reload_ok", "1 after the reload", registry=registry)
    held = HeldInTheRenderer()
    registry.register(held)
    exposition = CachedExposition(lambda: [], lambda: 0, registry, min_render_gap=0)
    exposition.start()
    try:
        exposition.notify()  # wake the renderer: it renders and starts collecting
        assert held.entered.acquire(timeout=10), "the renderer's collection"
        reloaded.set(1)  # what /-/reload changes, then tells the exposition...
        exposition.self_metrics_changed()  # ... before it answers
        held.go_on.release()  # the collection that began before it ends now, with reload_ok 0
        exposition.notify()  # the renderer goes round once more...
        assert held.entered.acquire(timeout=10), "the next collection"  # ... so it kept that
        assert b"reload_ok 1.0" in exposition.body()  # the next scrape shows the reload
        held.go_on.release()
    finally:
        held.go_on.release()
        exposition.stop()


def test_pieces_are_the_whole_body_or_an_exception_when_there_is_none() -> None:
    """What the HTTP server sends before it answers a status line: every piece of the body
    (plain, or one gzip member), or an exception when the first render fails."""
    failing = [True]

    def functions() -> list[list[bytes]]:
        if failing[0]:
            raise RuntimeError("a bug in rendering")
        return [[b"# HELP f f\n", b"# TYPE f gauge\n"], [b"f 1.0\n"]]

    exposition = CachedExposition(functions, lambda: 0, static_registry())
    for gzipped in (False, True):
        with pytest.raises(RuntimeError, match="a bug in rendering"):
            exposition.pieces(gzipped)
    failing[0] = False
    plain = exposition.pieces()
    own = generate_latest(static_registry())
    assert b"".join(plain) == b"# HELP f f\n# TYPE f gauge\nf 1.0\n" + own
    assert gzip.decompress(b"".join(exposition.pieces(gzipped=True))) == b"".join(plain)
    assert exposition.body() == b"".join(plain)
