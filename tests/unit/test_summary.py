from exporter.config import parse_config
from exporter.summary import config_summary, requests_per_15m


def test_request_projection() -> None:
    assert requests_per_15m(10, 60) == 150
    assert requests_per_15m(1, 1) == 900


def test_summary_warns_over_mudbase_rate_limit() -> None:
    functions = ", ".join(f"f{i}" for i in range(200))
    loaded = parse_config(
        f"targets: [{{project: p, functions: [{functions}]}}]",
        "big.yml",
        {"MUDBASE_TOKEN": "t0k3n"},
    )
    text = config_summary(loaded)
    assert "200 function(s) in 1 project(s)" in text
    assert "3000 per 15 minutes (12000 if every poll retried fully)" in text
    assert "WARNING: this exceeds Mudbase's default rate limit" in text
    assert "t0k3n" not in text
