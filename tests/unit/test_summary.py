"""`--config.check`'s summary: what is polled, and the request planner's projection of it."""

from exporter.config import parse_config
from exporter.summary import config_summary
from exporter.targets import Shard, TargetKey


def summary(text: str, shard: Shard | None = None) -> str:
    return config_summary(parse_config(text, "x.yml", {"MUDBASE_TOKEN": "t0k3n"}), shard)


def test_summary_shows_the_stretched_interval() -> None:
    functions = ", ".join(f"f{i}" for i in range(200))
    text = summary(f"targets: [{{project: p, functions: [{functions}]}}]")
    assert "200 listed function(s) in 1 project(s):" in text
    assert "    p: f0, f1, f2, f3, f4, f5, f6, f7, f8, f9 and 190 more" in text
    # 200 requests a round at 1582 per 15 minutes (1600 less the bucket of 10 s) need 113.8 s
    assert "requests per 15 minutes at a 1m54s interval: 1582 required, up to 0 optional" in text
    assert "listed functions' polls: 1582 (200 function(s) every interval)" in text
    assert "the budget stretches the interval to 1m54s" in text
    assert "t0k3n" not in text


def test_pages_per_poll_count_in_the_projection() -> None:
    text = summary("execution_pages: 3\ntargets: [{project: p, functions: [a, b]}]")
    assert "listed functions' polls: 90 (2 function(s) x 3 pages every interval)" in text
    text = summary(
        "execution_pages: 3\nexecution_metrics: false\ntargets: [{project: p, functions: [a]}]"
    )
    assert "listed functions' polls: 15 (1 function(s) every interval)" in text


def test_shards_split_the_functions_and_the_budget() -> None:
    keys = [TargetKey(f"p{i % 7}", f"f{i}") for i in range(3000)]
    owners = [[s for s in range(3) if Shard(s, 3).owns(k)] for k in keys]
    assert all(len(o) == 1 for o in owners)  # every function in exactly one shard
    sizes = [sum(1 for o in owners if o == [s]) for s in range(3)]
    assert all(900 < size < 1100 for size in sizes)  # evenly enough
    assert Shard(1, 3).owns(keys[0]) == Shard(1, 3).owns(TargetKey("p0", "f0"))  # stable
    functions = ", ".join(f"f{i}" for i in range(30))
    text = summary(f"targets: [{{project: p, functions: [{functions}]}}]", Shard(0, 2))
    assert "request budget 800 (Mudbase allows 2000 per client IP)" in text
    assert ", shard 0 of 2:" in text


def test_summary_projects_what_discovery_costs() -> None:
    text = summary("targets: [{project: p, functions: all}, {project: q, functions: [f1, f2]}]")
    assert "2 listed function(s) in 1 project(s); 1 project(s) whose functions are discovered" in (
        text
    )
    # two listed functions and one list page per interval: 3 x 15 per 15 minutes, at least
    assert "at least 45 required, up to 1221 optional" in text
    assert "list pages: at least 15 (one per 100 functions" in text
    # 1600 per 15 minutes is 106 requests a round at 60 s; 2 go to the listed functions
    assert "fit up to about 10300 discovered functions (7300 in one project" in text


def test_summary_prints_the_logs_cycle_and_what_interval_or_budget_buy() -> None:
    text = summary("targets: [{project: p, functions: all}]")
    # 5,000 functions at 60 s and a budget paid at 1,582 per 15 minutes: 105.5 requests a
    # round, 84.4 without the headroom, 50 list pages: 34.4 logs requests a round, each
    # function every 145 rounds
    assert (
        "    5,000 discovered functions: every 2h25m (34 a round); at interval 2m: every 1h24m "
        "(119 a round); at request_budget 3200: every 42m6s (119 a round)"
    ) in text
    assert "    10,000 discovered functions: every 15h48m (14 a round);" in text
    assert "functions with new failures go first" in text
    api_key = summary("mudbase: {api_key: k3y-abcdef}\ntargets: [{project: p, functions: all}]")
    assert "logs cycle" not in api_key  # no change-driven logs requests with an API key


def test_a_discovery_only_config_lists_no_listed_functions() -> None:
    text = summary("mudbase: {retries: 1}\ntargets: [{project: a, functions: all}]")
    assert "  1 project(s) whose functions are discovered:" in text
    assert "function(s) in 0 project(s)" not in text
    assert "timeout 10s, 1 retry" in text


def test_a_discovered_project_belongs_whole_to_one_shard() -> None:
    projects = [f"proj{i}" for i in range(300)]
    owners = [[s for s in range(3) if Shard(s, 3).owns_project(p)] for p in projects]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == {0, 1, 2}
    config = "targets: [" + ", ".join(f"{{project: {p}, functions: all}}" for p in projects[:6])
    texts = [summary(config + "]", Shard(s, 3)) for s in range(3)]
    for project in projects[:6]:
        listed_by = [s for s in range(3) if f"    {project}: all functions" in texts[s]]
        assert listed_by == [owners[projects.index(project)][0]]
