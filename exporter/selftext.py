"""The exporter's own metrics as text, per scrape, redoing only what changed since the last.

prometheus_client renders every sample of a registry on each call (about 0.45 ms for the
exporter's ~150 samples, 0.9 ms after a second of polling in a busy process). Here a family
whose samples are all unchanged keeps its text; in a changed family only the samples not seen
before are rendered, by prometheus_client itself (so the bytes are its own), and the lines of
the others are kept. The text is then byte for byte what `generate_latest` writes.
"""

import threading
from collections.abc import Hashable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter import gzipstream

# samples that generate_latest moves to a family of their own after the others
_MOVED_SUFFIXES = ("_created", "_gsum", "_gcount")


class _OneFamily(Collector):
    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


def _render(family: Metric, samples: list[Sample]) -> bytes:
    """prometheus_client's text for the family with only these samples."""
    subset = Metric(family.name, family.documentation, family.type, family.unit)
    subset.samples = samples
    return generate_latest(_OneFamily(subset))


def _key(sample: Sample) -> Hashable:
    return (sample.name, tuple(sample.labels.items()), sample.value, sample.timestamp)


def _header_key(family: Metric) -> Hashable:
    return (family.name, family.documentation, family.type, family.unit)


def _lines(text: bytes) -> list[bytes]:
    return [line + b"\n" for line in text.split(b"\n")[:-1]]


class _FamilyText:
    """One family's text: its header, and a line per sample kept while the sample is the same."""

    def __init__(self, family: Metric) -> None:
        self.family = family
        self.header = _render(family, [])
        self.lines: dict[Hashable, bytes] = {}
        self.text = b""

    def update(self, family: Metric) -> int:
        """Now this family's samples; the number of samples rendered."""
        self.family = family
        keys = [_key(sample) for sample in family.samples]
        new = [s for s, key in zip(family.samples, keys, strict=True) if key not in self.lines]
        rendered = _lines(_render(family, new)[len(self.header) :])
        moved = {family.name + suffix for suffix in _MOVED_SUFFIXES}
        if len(rendered) != len(new) or any(sample.name in moved for sample in new):
            self.text, self.lines = _render(family, family.samples), {}  # no line per sample
            return len(family.samples)
        lines = dict(zip((_key(sample) for sample in new), rendered, strict=True))
        lines.update((key, self.lines[key]) for key in keys if key in self.lines)
        self.lines = lines
        self.text = b"".join([self.header, *(lines[key] for key in keys)])
        return len(new)


def _same_objects(old: Sequence[bytes], new: Sequence[bytes]) -> bool:
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))


class SelfMetricsText:
    """The self-metrics as texts per family and as a deflate segment: a family is rendered
    again only when its samples changed, and the segment compressed again only when some
    family did."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._families: dict[str, _FamilyText] = {}
        self._segment: tuple[list[bytes], bytes] = ([], b"")
        self.rendered_samples = 0  # for tests

    def texts(self) -> list[bytes]:
        """The families' texts, in the registry's order."""
        families = list(self._registry.collect())
        with self._lock:
            cache = {family.name: self._text(family) for family in families}
            self._families = cache
            return [cache[family.name].text for family in families]

    def segment(self, texts: list[bytes]) -> bytes:
        """These texts (from `texts`) as a deflate segment, compressed when they changed."""
        with self._lock:
            if not _same_objects(self._segment[0], texts):
                self._segment = (texts, gzipstream.segment(texts))
            return self._segment[1]

    def _text(self, family: Metric) -> _FamilyText:
        cached = self._families.get(family.name)
        if cached is not None and cached.family == family:  # name, help, type, unit, samples
            return cached
        if cached is None or _header_key(cached.family) != _header_key(family):
            cached = _FamilyText(family)
        self.rendered_samples += cached.update(family)
        return cached
