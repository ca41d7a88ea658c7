"""`python -m exporter` runs the same CLI as the `mudbase-exporter` console script."""

from exporter.cli import main

raise SystemExit(main())
