"""mudbase-exporter: Prometheus metrics for Mudbase serverless functions."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mudbase-exporter")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"
