"""Writes deploy/kubernetes/operator/prometheusrule.yaml from prometheus/mudbase-rules.yml.

Run `python deploy/kubernetes/build_prometheusrule.py` after changing the rules; the test suite
checks that the PrometheusRule's groups are identical to the rule file's (`--check`).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "mudbase-rules.yml"
OUTPUT = Path(__file__).resolve().parent / "operator" / "prometheusrule.yaml"
HEADER = """\
# Generated from prometheus/mudbase-rules.yml by deploy/kubernetes/build_prometheusrule.py.
# Do not edit: edit the rule file and run the script.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: mudbase-exporter
  labels: {app.kubernetes.io/name: mudbase-exporter}
spec:
"""


def render() -> str:
    lines = RULES.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    return HEADER + "".join(f"  {line}\n" if line else "\n" for line in lines[start:])


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
