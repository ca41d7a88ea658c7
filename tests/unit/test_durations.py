import pytest

from exporter.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1d", 86400),
        ("2w", 1209600),
        ("1y", 31536000),
        ("1m30s", 90),
        ("0s", 0),
        ("1h0m5s", 3605),
    ],
)
def test_prometheus_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "30", "1.5s", "1 minute", "30m1h", "1s1s", "-5s", "1S", "5 s"]
)
def test_non_prometheus_durations_are_rejected_with_the_accepted_form(text: str) -> None:
    with pytest.raises(ValueError, match="use a Prometheus duration such as 30s"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (90, "1m30s"), (0.5, "500ms"), (5400, "1h30m"), (60, "1m")]
)
def test_format_is_the_shortest_spelling(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
