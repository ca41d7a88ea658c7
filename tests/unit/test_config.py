"""Config loading: valid files, and a table of invalid files with their exact messages."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from exporter.config import (
    ApiKeyCredentials,
    ConfigError,
    LoginCredentials,
    TokenCredentials,
    load_config,
    parse_config,
    public_url,
)
from exporter.targets import FunctionSettings, TargetKey
from tests.helpers import deny_reading

TESTDATA = Path(__file__).resolve().parent.parent / "testdata" / "config"
NO_ENV: dict[str, str] = {}

NO_CREDENTIALS = (
    "mudbase.token: no credentials: set mudbase.token or mudbase.token_file (or the "
    "MUDBASE_TOKEN environment variable), mudbase.email with mudbase.password_file, or "
    "mudbase.api_key_file (or MUDBASE_API_KEY)"
)
INVALID = {
    "invalid-unknown-key.yml": ["mudbase.tokn: unknown key"],
    "invalid-duration.yml": [
        "interval: invalid duration '1 minute': use a Prometheus duration such as 30s, 1m, "
        "1h30m or 500ms"
    ],
    "invalid-duration-number.yml": [
        "mudbase.timeout: invalid duration 10: durations are strings with a unit, such as 30s or 1m"
    ],
    "invalid-id.yml": [
        "targets[0].functions[1]: invalid ID '../admin': use 1 to 64 letters, digits, '_' or '-'"
    ],
    "invalid-project-id.yml": [
        "targets[0].project: invalid ID 'proj with spaces': use 1 to 64 letters, digits, '_' or '-'"
    ],
    "invalid-duplicate.yml": [
        "targets[1].functions[0]: duplicate target p/b (first listed at targets[0].functions[1])"
    ],
    "invalid-no-token.yml": [NO_CREDENTIALS],
    "invalid-two-tokens.yml": ["mudbase: set only one of token and token_file"],
    "invalid-url.yml": [
        "mudbase.url: invalid URL 'file:///etc/passwd': use http:// or https:// and a host"
    ],
    "invalid-no-targets.yml": ["targets: required key is missing"],
    "invalid-empty-functions.yml": [
        "targets[0].functions: list at least one function ID, or write `functions: all`"
    ],
    "invalid-discovery.yml": [
        "targets[0].include: invalid regular expression '(unclosed': missing ), unterminated "
        "subpattern at position 0",
        "targets[1].functions: 'some': give a list of function IDs, or `all`",
        "targets[2]: include, exclude and active_only need `functions: all`",
        "targets[3].project: shop is also listed at targets[0]; with `functions: all` a "
        "project is listed once",
    ],
    "invalid-timeout-vs-interval.yml": ["mudbase.timeout: 30s must be shorter than interval (30s)"],
    "invalid-short-interval.yml": [
        "concurrency: Input should be greater than or equal to 1",
        "mudbase.timeout: 10s (the default) must be shorter than interval (100ms)",
        "stale_after: 50ms must be at least interval (100ms)",
    ],
    "invalid-yaml.yml": ["not valid YAML: expected ',' or '}', but got ':' at line 2, column 8"],
    "invalid-not-mapping.yml": ["the file must be a YAML mapping with a 'targets' key"],
    "invalid-concurrency.yml": ["concurrency: Input should be greater than or equal to 1"],
    "invalid-function-type.yml": [
        "targets[0].functions[0]: invalid function 42: give a function ID or a mapping with 'id'"
    ],
    "invalid-token-file-missing.yml": [
        "mudbase.token_file: cannot read '/nonexistent/token': no such file or directory"
    ],
    "invalid-empty-targets.yml": [
        "targets: the list is empty: add at least one `- project: PROJECT_ID` with "
        "`functions: [FUNCTION_ID, ...]` or `functions: all`"
    ],
    "invalid-mixed-credentials.yml": [
        "mudbase: use one way to authenticate: token or token_file; email with password or "
        "password_file; or api_key or api_key_file"
    ],
    "invalid-login-no-password.yml": [
        "mudbase.password: email needs password_file, password or the MUDBASE_PASSWORD "
        "environment variable"
    ],
    "invalid-password-no-email.yml": ["mudbase.email: required with password or password_file"],
    "invalid-many.yml": [
        "mudbase.url: invalid URL 'ftp://x': use http:// or https:// and a host",
        "mudbase.retries: Input should be greater than or equal to 0",
        "interval: invalid duration '0s': must be greater than zero",
        "targets[0].functions[1]: invalid ID 'a b': use 1 to 64 letters, digits, '_' or '-'",
        "targets[0].extra: unknown key",
        NO_CREDENTIALS,
    ],
}


def test_every_invalid_file_has_a_case() -> None:
    assert sorted(p.name for p in TESTDATA.glob("invalid-*.yml")) == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_file_is_rejected_with_exact_messages(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(TESTDATA / name, env=NO_ENV)
    assert caught.value.problems == INVALID[name]
    assert "t0ken-value" not in str(caught.value)


def test_minimal_config_gets_defaults() -> None:
    loaded = parse_config(
        "targets: [{project: p, functions: [f, {id: g}]}]", "x.yml", {"MUDBASE_TOKEN": "tok1"}
    )
    config = loaded.config
    assert config.mudbase.url == "https://cloud.mudbase.dev"
    assert config.interval == 60
    assert config.mudbase.timeout == 10
    assert config.stale_after is None  # three (effective) intervals
    assert config.function_keys() == [("p", "f"), ("p", "g")]
    assert loaded.credentials == TokenCredentials(SecretStr("tok1"), "env")


def test_token_file_is_read_and_trimmed(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  file-token-123\n")
    loaded = parse_config(
        f"mudbase: {{token_file: {token_file}}}\ntargets: [{{project: p, functions: [f]}}]",
        "x.yml",
        {"MUDBASE_TOKEN": "env-token-should-lose"},
    )
    assert loaded.credentials == TokenCredentials(SecretStr("file-token-123"), "file", token_file)


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(
            f"mudbase: {{token_file: {token_file}}}\ntargets: [{{project: p, functions: [f]}}]",
            "x.yml",
            NO_ENV,
        )
    assert caught.value.problems == [f"mudbase.token_file: the file {str(token_file)!r} is empty"]


def test_inline_token_wins_and_never_shows_in_repr() -> None:
    loaded = parse_config(
        "mudbase: {token: inline-secret-987, url: 'http://127.0.0.1:1/'}\n"
        "interval: 1h30m\nstale_after: 2h\ntargets: [{project: p, functions: [f]}]",
        "x.yml",
        {"MUDBASE_TOKEN": "env-token"},
    )
    assert loaded.credentials == TokenCredentials(SecretStr("inline-secret-987"), "config")
    assert loaded.config.mudbase.url == "http://127.0.0.1:1"
    assert loaded.config.interval == 5400
    assert loaded.config.stale_after == 7200
    for text in (repr(loaded), str(loaded), repr(loaded.config), loaded.config.model_dump_json()):
        assert "inline-secret-987" not in text


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "ftp://ops:pw-123@host/x",
            "invalid URL 'ftp://host/x': use http:// or https:// and a host",
        ),
        (
            "http://ops:pw-123@ho st/",
            "invalid URL 'http://ho st/': use http:// or https:// and a host",
        ),
        ("ops:pw-123@host", "invalid URL 'host': use http:// or https:// and a host"),
        (
            "http://ops:pw-123@host:-1",
            "invalid URL 'http://host:-1': the port is not a number from 0 to 65535",
        ),
        (
            "https://ops:pw-123@host:99999/api",
            "invalid URL 'https://host:99999/api': the port is not a number from 0 to 65535",
        ),
    ],
)
def test_an_invalid_url_is_one_line_without_its_user_info(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            f"mudbase: {{url: '{url}', token: t}}\ntargets: [{{project: p, functions: [f]}}]",
            "x.yml",
            NO_ENV,
        )
    assert caught.value.problems == [f"mudbase.url: {problem}"]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yml", env=NO_ENV)
    assert caught.value.problems == [
        f"cannot read {str(tmp_path / 'absent.yml')!r}: no such file or directory"
    ]


def test_config_file_that_is_a_directory_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env=NO_ENV)
    assert caught.value.problems == [f"cannot read {str(tmp_path)!r}: is a directory"]
    latin1 = tmp_path / "latin1.yml"
    latin1.write_bytes(b"# caf\xe9\ntargets: [{project: p, functions: [f]}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(latin1, env=NO_ENV)
    assert caught.value.problems == [f"cannot read {str(latin1)!r}: not UTF-8 text (byte 5)"]


SECRET_FILE_KEYS = {
    "token_file": "token_file: {path}",
    "password_file": "email: ops@example.com, password_file: {path}",
    "api_key_file": "api_key_file: {path}",
}


def load_with_secret_file(key: str, path: Path) -> list[str]:
    settings = SECRET_FILE_KEYS[key].format(path=path)
    with pytest.raises(ConfigError) as caught:
        parse_config(
            f"mudbase: {{{settings}}}\ntargets: [{{project: p, functions: [f]}}]",
            "x.yml",
            NO_ENV,
        )
    return caught.value.problems


@pytest.mark.parametrize("key", sorted(SECRET_FILE_KEYS))
def test_secret_file_that_is_a_directory(key: str, tmp_path: Path) -> None:
    assert load_with_secret_file(key, tmp_path) == [
        f"mudbase.{key}: cannot read {str(tmp_path)!r}: is a directory"
    ]


@pytest.mark.parametrize("key", sorted(SECRET_FILE_KEYS))
def test_secret_file_that_is_not_utf8(key: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"\xfe\xffsecret\n")
    assert load_with_secret_file(key, secret) == [
        f"mudbase.{key}: cannot read {str(secret)!r}: not UTF-8 text (byte 0)"
    ]


@pytest.mark.parametrize("key", sorted(SECRET_FILE_KEYS))
def test_secret_file_that_is_missing(key: str, tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    assert load_with_secret_file(key, absent) == [
        f"mudbase.{key}: cannot read {str(absent)!r}: no such file or directory"
    ]


@pytest.mark.parametrize("key", sorted(SECRET_FILE_KEYS))
def test_secret_file_that_is_unreadable(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value\n")
    deny_reading(monkeypatch, secret)
    assert load_with_secret_file(key, secret) == [
        f"mudbase.{key}: cannot read {str(secret)!r}: permission denied"
    ]


def test_objective_and_expected_run_interval_resolve_function_then_target_then_default() -> None:
    loaded = parse_config(
        "slo_objective: 0.95\n"
        "targets:\n"
        "  - project: p\n"
        "    slo_objective: 0.99\n"
        "    expected_run_interval: 1h\n"
        "    functions: [a, {id: b, slo_objective: 0.999, expected_run_interval: 10m}]\n"
        "  - project: q\n"
        "    functions: [c]\n",
        "x.yml",
        {"MUDBASE_TOKEN": "tok1"},
    )
    settings = loaded.config.function_settings()
    assert settings[TargetKey("p", "a")] == FunctionSettings(0.99, 3600)
    assert settings[TargetKey("p", "b")] == FunctionSettings(0.999, 600)
    assert settings[TargetKey("q", "c")] == FunctionSettings(0.95, None)


@pytest.mark.parametrize("value", ["1", "0", "1.5", "'high'"])
def test_objective_must_be_strictly_between_zero_and_one(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            f"targets: [{{project: p, functions: [{{id: f, slo_objective: {value}}}]}}]",
            "x.yml",
            {"MUDBASE_TOKEN": "tok1"},
        )
    assert caught.value.problems[0].startswith("targets[0].functions[0].slo_objective: ")


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            "mudbase: {email: ops@example.com, password: pw-123456}",
            {},
            LoginCredentials("ops@example.com", SecretStr("pw-123456"), "config"),
        ),
        (
            "mudbase: {email: ops@example.com}",
            {"MUDBASE_PASSWORD": "pw-from-env"},
            LoginCredentials("ops@example.com", SecretStr("pw-from-env"), "env"),
        ),
        (
            "mudbase: {api_key: key-123456}",
            {},
            ApiKeyCredentials(SecretStr("key-123456"), "config"),
        ),
        (
            "mudbase: {}",
            {"MUDBASE_API_KEY": "env-key-1"},
            ApiKeyCredentials(SecretStr("env-key-1"), "env"),
        ),
        (
            "mudbase: {}",
            {"MUDBASE_API_KEY": "k", "MUDBASE_TOKEN": "t0k"},
            TokenCredentials(SecretStr("t0k"), "env"),
        ),
    ],
)
def test_each_way_to_authenticate(text: str, env: dict[str, str], expected: object) -> None:
    loaded = parse_config(f"{text}\ntargets: [{{project: p, functions: [f]}}]", "x.yml", env)
    assert loaded.credentials == expected
    assert "pw-" not in repr(loaded)


def test_password_file(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("file-pw-42\n")
    loaded = parse_config(
        f"mudbase: {{email: a@b.c, password_file: {password}}}\n"
        "targets: [{project: p, functions: [f]}]",
        "x.yml",
        NO_ENV,
    )
    assert loaded.credentials == LoginCredentials(
        "a@b.c", SecretStr("file-pw-42"), "file", password
    )


def test_yaml_is_loaded_safely() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("targets: !!python/object/apply:os.system ['true']", "x.yml", NO_ENV)
    assert caught.value.problems[0].startswith("not valid YAML: could not determine a constructor")


def test_functions_all_builds_a_project_selector() -> None:
    loaded = parse_config(
        "slo_objective: 0.95\nmax_age: 5m\ntargets:\n"
        "  - {project: shop, functions: all, include: '^checkout|pay', exclude: test,"
        " active_only: true, slo_objective: 0.999}\n"
        "  - {project: ops, functions: [backup]}\n",
        "x.yml",
        {"MUDBASE_TOKEN": "t"},
    )
    (selector,) = loaded.config.project_selectors()
    assert selector.project == "shop"
    assert selector.settings == FunctionSettings(0.999, None)
    assert loaded.config.max_age == 300
    assert loaded.config.function_keys() == [("ops", "backup")]
    assert selector.selects("checkout-v2", "Checkout", active=True)
    assert selector.selects("fn1", "pay invoices", active=None)
    assert not selector.selects("checkout-test", "Checkout", active=True)
    assert not selector.selects("checkout", "Checkout", active=False)
    assert not selector.selects("refund", "Refund", active=True)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://ops:pa55@mudbase.example:8443/base?token=x#frag",
            "https://mudbase.example:8443/base",
        ),
        ("http://u:p@[::1]:9718", "http://[::1]:9718"),
        ("https://mudbase.example", "https://mudbase.example"),
    ],
)
def test_the_mudbase_url_is_shown_without_user_info_query_or_fragment(url: str, shown: str) -> None:
    assert public_url(url) == shown
