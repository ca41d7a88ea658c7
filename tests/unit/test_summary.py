from exporter.budget import effective_interval
from exporter.config import parse_config
from exporter.summary import config_summary, requests_per_15m
from exporter.targets import Shard, TargetKey


def test_request_projection() -> None:
    assert requests_per_15m(10, 60) == 150
    assert requests_per_15m(1, 1) == 900


def test_interval_stretches_only_beyond_the_budget() -> None:
    assert effective_interval(60, 100, 1600) == 60
    assert effective_interval(60, 1600, 1600) == 900  # 1600 requests a round: one per 15 min
    assert effective_interval(60, 200, 1600) == 112.5


def test_summary_shows_the_stretched_interval() -> None:
    functions = ", ".join(f"f{i}" for i in range(200))
    loaded = parse_config(
        f"targets: [{{project: p, functions: [{functions}]}}]",
        "big.yml",
        {"MUDBASE_TOKEN": "t0k3n"},
    )
    text = config_summary(loaded)
    assert "200 function(s) in 1 project(s)" in text
    assert "3000 per 15 minutes at this interval; request budget 1600 per 15 minutes" in text
    assert "the budget stretches the interval to 1m52s" in text
    assert "t0k3n" not in text


def test_shards_split_the_functions_and_the_budget() -> None:
    keys = [TargetKey(f"p{i % 7}", f"f{i}") for i in range(3000)]
    owners = [[s for s in range(3) if Shard(s, 3).owns(k)] for k in keys]
    assert all(len(o) == 1 for o in owners)  # every function in exactly one shard
    sizes = [sum(1 for o in owners if o == [s]) for s in range(3)]
    assert all(900 < size < 1100 for size in sizes)  # evenly enough
    assert Shard(1, 3).owns(keys[0]) == Shard(1, 3).owns(TargetKey("p0", "f0"))  # stable
    functions = ", ".join(f"f{i}" for i in range(30))
    loaded = parse_config(
        f"targets: [{{project: p, functions: [{functions}]}}]", "x.yml", {"MUDBASE_TOKEN": "t"}
    )
    text = config_summary(loaded, Shard(0, 2))
    assert "request budget 800 per 15 minutes" in text
    assert ", shard 0 of 2:" in text


def test_summary_projects_what_discovery_costs() -> None:
    loaded = parse_config(
        "targets: [{project: p, functions: all}, {project: q, functions: [f1, f2]}]",
        "disc.yml",
        {"MUDBASE_TOKEN": "t"},
    )
    text = config_summary(loaded)
    # two listed functions and one list request per interval: 3 x 15 per 15 minutes, at least
    assert "at least 45 per 15 minutes at this interval" in text
    # 1600 per 15 minutes is 106 requests a round at 60 s; 2 go to the listed functions
    assert "fit up to about 10400 discovered functions (8500 in one project" in text


def test_a_discovered_project_belongs_whole_to_one_shard() -> None:
    projects = [f"proj{i}" for i in range(300)]
    owners = [[s for s in range(3) if Shard(s, 3).owns_project(p)] for p in projects]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == {0, 1, 2}
    loaded = parse_config(
        "targets: [" + ", ".join(f"{{project: {p}, functions: all}}" for p in projects[:6]) + "]",
        "x.yml",
        {"MUDBASE_TOKEN": "t"},
    )
    texts = [config_summary(loaded, Shard(s, 3)) for s in range(3)]
    for project in projects[:6]:
        listed_by = [s for s in range(3) if f"    {project}: all functions" in texts[s]]
        assert listed_by == [owners[projects.index(project)][0]]
