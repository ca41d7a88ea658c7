"""The configuration file: strict models, and a loader that reports every error at once.

Each error names its key path (`targets[0].functions[1]: ...`). Unknown keys are errors. A
secret never appears in an error message or a repr (pydantic's SecretStr hides it).
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from exporter.durations import format_duration, parse_duration
from exporter.targets import FunctionSettings, ProjectSelector, TargetKey

TOKEN_ENV_VAR = "MUDBASE_TOKEN"  # noqa: S105 - the name of a variable
DEFAULT_URL = "https://cloud.mudbase.dev"
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEEP_VALUES_INTERVALS = 3  # without stale_after, a failing function's values stay this many
# (effective) intervals


class ConfigError(Exception):
    """One or more problems with a configuration file, each naming its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid configuration {source}: {len(problems)} error(s):\n{lines}")


def _duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError with the key path
            f"invalid duration {value!r}: durations are strings with a unit, such as 30s or 1m"
        )
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: must be greater than zero")
    return seconds


def _resource_id(value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValueError(f"invalid ID {value!r}: use 1 to 64 letters, digits, '_' or '-'")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
# A success objective such as 0.99 (99% of executions succeed); strictly between 0 and 1.
Objective = Annotated[float, Field(gt=0, lt=1)]
ResourceId = Annotated[str, BeforeValidator(_resource_id)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Overrides(_Strict):
    """Settings a target or a single function may override."""

    slo_objective: Objective | None = None
    expected_run_interval: Duration | None = None


class FunctionSpec(_Overrides):
    """One function to poll. In YAML either a bare ID or a mapping with `id` (and options)."""

    id: ResourceId


def _function_entry(value: object) -> object:
    if isinstance(value, str):
        return {"id": value}
    if isinstance(value, Mapping):
        return value
    raise ValueError(f"invalid function {value!r}: give a function ID or a mapping with 'id'")


FunctionEntry = Annotated[FunctionSpec, BeforeValidator(_function_entry)]


def _regex(value: object) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"invalid regular expression {value!r}: give a string")  # noqa: TRY004
    try:
        return re.compile(value)
    except re.error as err:
        raise ValueError(f"invalid regular expression {value!r}: {err}") from None


Regex = Annotated[re.Pattern[str] | None, BeforeValidator(_regex)]


class TargetSpec(_Overrides):
    """A project and the functions of it to poll: a list of IDs, or `all` (discovered)."""

    project: ResourceId
    functions: Literal["all"] | list[FunctionEntry]
    include: Regex = None
    exclude: Regex = None
    active_only: bool = False

    @field_validator("functions", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, list) and not value:
            raise ValueError("list at least one function ID, or write `functions: all`")
        if isinstance(value, str) and value != "all":
            raise ValueError(f"{value!r}: give a list of function IDs, or `all`")
        return value

    @model_validator(mode="after")
    def _selection_needs_all(self) -> "TargetSpec":
        if self.functions != "all" and (
            self.include is not None or self.exclude is not None or self.active_only
        ):
            raise ValueError("include, exclude and active_only need `functions: all`")
        return self

    @property
    def listed(self) -> list[FunctionSpec]:
        return [] if self.functions == "all" else self.functions


class MudbaseSettings(_Strict):
    """How to reach the Mudbase API, and one way to authenticate (token, login or API key)."""

    url: str = DEFAULT_URL
    token: SecretStr | None = None
    token_file: Path | None = None
    email: str | None = Field(default=None, min_length=3)
    password: SecretStr | None = None
    password_file: Path | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    timeout: Duration = 10.0
    retries: int = Field(default=3, ge=0, le=10)
    max_retry_wait: Duration = 30.0
    request_budget: int = Field(default=1600, ge=10, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        shown = _USER_INFO.sub(r"\1", value)  # a password in it stays out of the errors
        if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
            raise ValueError(f"invalid URL {shown!r}: use http:// or https:// and a host")
        try:
            urlsplit(value).port  # noqa: B018  (raises for a port that is not 0 to 65535)
        except ValueError:
            raise ValueError(
                f"invalid URL {shown!r}: the port is not a number from 0 to 65535"
            ) from None
        return value.rstrip("/")

    @field_validator("token_file", "password_file", "api_key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                read_token_file(value)
            except FileReadError as err:
                raise ValueError(str(err)) from None
        return value


# up to the last "@": the user info of a URL too malformed to split
_USER_INFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?.*@", re.DOTALL)


def public_url(url: str) -> str:
    """The URL without user info, query or fragment: what the exporter shows of `mudbase.url`
    (the status page, --config.check, its logs), so no credential in it is ever shown."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Config(_Strict):
    """The whole configuration file."""

    mudbase: MudbaseSettings = MudbaseSettings()
    interval: Duration = 60.0
    concurrency: int = Field(default=8, ge=1, le=256)
    stale_after: Duration | None = None
    slo_objective: Objective = 0.99
    max_age: Duration = 600.0
    execution_metrics: bool = True
    execution_pages: int = Field(default=1, ge=1, le=10)
    targets: list[TargetSpec]

    @field_validator("targets", mode="before")
    @classmethod
    def _some_target(cls, value: object) -> object:
        if isinstance(value, list) and not value:
            raise ValueError(
                "the list is empty: add at least one `- project: PROJECT_ID` with "
                "`functions: [FUNCTION_ID, ...]` or `functions: all`"
            )
        return value

    @property
    def pages_per_poll(self) -> int:
        """Logs pages one poll of a function may fetch (one without execution metrics)."""
        return self.execution_pages if self.execution_metrics else 1

    def function_keys(self) -> list[tuple[str, str]]:
        return [(t.project, f.id) for t in self.targets for f in t.listed]

    def project_selectors(self) -> list[ProjectSelector]:
        """The `functions: all` targets: projects whose functions are discovered."""
        return [
            ProjectSelector(
                t.project,
                FunctionSettings(
                    _first(t.slo_objective, self.slo_objective), t.expected_run_interval
                ),
                t.include,
                t.exclude,
                t.active_only,
            )
            for t in self.targets
            if t.functions == "all"
        ]

    def function_settings(self) -> dict[TargetKey, FunctionSettings]:
        """Every function with its settings: its own, else its target's, else the default."""
        return {
            TargetKey(target.project, function.id): FunctionSettings(
                slo_objective=_first(
                    function.slo_objective, target.slo_objective, self.slo_objective
                ),
                expected_run_interval=function.expected_run_interval
                or target.expected_run_interval,
            )
            for target in self.targets
            for function in target.listed
        }


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


CredentialSource = Literal["config", "file", "env"]


@dataclass(frozen=True)
class TokenCredentials:
    """A bearer token (JWT), inline, in a file (re-read when it changes) or from the env."""

    token: SecretStr
    source: CredentialSource
    file: Path | None = None


@dataclass(frozen=True)
class LoginCredentials:
    """Email and password: the exporter logs in and refreshes its session itself."""

    email: str
    password: SecretStr
    source: CredentialSource
    file: Path | None = None


@dataclass(frozen=True)
class ApiKeyCredentials:
    """An API key, sent as X-API-Key."""

    key: SecretStr
    source: CredentialSource
    file: Path | None = None


Credentials = TokenCredentials | LoginCredentials | ApiKeyCredentials


def secrets_of(credentials: Credentials) -> list[str]:
    """Every secret value in these credentials, for log redaction."""
    if isinstance(credentials, TokenCredentials):
        return [credentials.token.get_secret_value()]
    if isinstance(credentials, LoginCredentials):
        return [credentials.password.get_secret_value()]
    return [credentials.key.get_secret_value()]


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config plus the credentials it resolved (their repr hides the secrets)."""

    config: Config
    credentials: Credentials
    source: str

    @property
    def change_driven_logs(self) -> bool:
        """Whether discovered functions get logs requests: Mudbase documents API keys for the
        list endpoint only, so none with an API key."""
        return not isinstance(self.credentials, ApiKeyCredentials)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, parse and validate a file. Raises ConfigError listing every problem."""
    source = str(path)
    try:
        text = read_text_file(Path(path))
    except FileReadError as err:
        raise ConfigError(source, [str(err)]) from None
    return parse_config(text, source, os.environ if env is None else env)


def parse_config(text: str, source: str, env: Mapping[str, str]) -> LoadedConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(source, [f"not valid YAML: {_yaml_problem(err)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must be a YAML mapping with a 'targets' key"])
    problems = _cross_checks(raw, env)
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e, raw) for e in err.errors() if _relevant(e, raw)] + problems
    if problems or config is None:
        raise ConfigError(source, problems)
    credentials, problem = _resolve_credentials(config.mudbase, env)
    if problem:
        raise ConfigError(source, [problem])
    return LoadedConfig(config, credentials, source)


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


def key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _lookup(raw: object, loc: tuple[int | str, ...]) -> object:
    for part in loc:
        if isinstance(raw, dict) and part in raw:  # noqa: SIM114 - mypy narrows each branch
            raw = raw[part]
        elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        else:
            return None
    return raw


def _relevant(error: ErrorDetails, raw: dict[str, Any]) -> bool:
    """`functions` is `all` or a list: keep only the errors of the branch the file used."""
    loc = error["loc"]
    for i, part in enumerate(loc):
        if part == "literal['all']":
            return not isinstance(_lookup(raw, loc[:i]), list)
        if isinstance(part, str) and part.startswith("list["):
            return isinstance(_lookup(raw, loc[:i]), list)
    return True


def _describe(error: ErrorDetails, raw: dict[str, Any]) -> str:
    loc = tuple(
        p
        for p in error["loc"]
        if not (isinstance(p, str) and p.startswith(("function-", "list[", "literal[")))
    )
    if loc and loc[-1] == "id" and isinstance(_lookup(raw, loc[:-1]), str):
        loc = loc[:-1]  # a bare function ID: name the list entry, not the implied `id` key
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "value_error":
        message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    else:
        message = error["msg"]
    return f"{key_path(loc)}: {message}"


def _cross_checks(raw: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Checks across keys, run on the raw data so they report even when other keys are wrong."""
    given = raw.get("mudbase")
    mudbase: dict[str, Any] = given if isinstance(given, dict) else {}
    return (
        _token_problems(mudbase, env)
        + _empty_file_problems(mudbase)
        + _duplicate_problems(raw.get("targets"))
        + _timing_problems(raw, mudbase)
    )


_GROUPS = {
    "token": ("token", "token_file"),
    "login": ("email", "password", "password_file"),
    "api_key": ("api_key", "api_key_file"),
}
PASSWORD_ENV_VAR = "MUDBASE_PASSWORD"  # noqa: S105 - the name of a variable
API_KEY_ENV_VAR = "MUDBASE_API_KEY"


def _token_problems(mudbase: object, env: Mapping[str, str]) -> list[str]:
    """Exactly one way to authenticate, complete: a token, a login, or an API key."""
    settings = mudbase if isinstance(mudbase, dict) else {}
    given = {k for keys in _GROUPS.values() for k in keys if settings.get(k) not in (None, "")}
    groups = [name for name, keys in _GROUPS.items() if given & set(keys)]
    if len(groups) > 1:
        return [
            "mudbase: use one way to authenticate: token or token_file; email with password "
            "or password_file; or api_key or api_key_file"
        ]
    if not groups:
        if env.get(TOKEN_ENV_VAR) or env.get(API_KEY_ENV_VAR):
            return []
        return [
            "mudbase.token: no credentials: set mudbase.token or mudbase.token_file (or the "
            f"{TOKEN_ENV_VAR} environment variable), mudbase.email with mudbase.password_file, "
            f"or mudbase.api_key_file (or {API_KEY_ENV_VAR})"
        ]
    return _group_problems(groups[0], given, env)


def _group_problems(group: str, given: set[str], env: Mapping[str, str]) -> list[str]:
    for first, second in (
        ("token", "token_file"),
        ("password", "password_file"),
        ("api_key", "api_key_file"),
    ):
        if {first, second} <= given:
            return [f"mudbase: set only one of {first} and {second}"]
    if group == "login" and "email" not in given:
        return ["mudbase.email: required with password or password_file"]
    if (
        group == "login"
        and not given & {"password", "password_file"}
        and not env.get(PASSWORD_ENV_VAR)
    ):
        return [
            "mudbase.password: email needs password_file, password or the "
            f"{PASSWORD_ENV_VAR} environment variable"
        ]
    return []


def _duplicate_problems(targets: object) -> list[str]:
    if not isinstance(targets, list):
        return []
    seen: dict[tuple[str, str], str] = {}
    problems = []
    projects: dict[str, tuple[str, bool]] = {}  # project -> (first place, whether `all`)
    for t_index, target in enumerate(targets):
        if not isinstance(target, dict):
            continue
        project, is_all = str(target.get("project")), target.get("functions") == "all"
        if project in projects and (is_all or projects[project][1]):
            problems.append(
                f"targets[{t_index}].project: {project} is also listed at "
                f"{projects[project][0]}; with `functions: all` a project is listed once"
            )
        projects.setdefault(project, (f"targets[{t_index}]", is_all))
        if not isinstance(target.get("functions"), list):
            continue
        for f_index, entry in enumerate(target["functions"]):
            function = entry.get("id") if isinstance(entry, dict) else entry
            key = (str(target.get("project")), str(function))
            where = f"targets[{t_index}].functions[{f_index}]"
            if key in seen:
                problems.append(
                    f"{where}: duplicate target {key[0]}/{key[1]} (first listed at {seen[key]})"
                )
            else:
                seen[key] = where
    return problems


def _raw_duration(value: object, default: float | None) -> tuple[float | None, str]:
    """A duration from raw YAML and how to show it; None if absent-without-default or invalid."""
    if value is None:
        shown = f"{format_duration(default)} (the default)" if default is not None else ""
        return default, shown
    try:
        return _duration(value), str(value)
    except ValueError:
        return None, ""  # reported by the schema check


def _timing_problems(raw: dict[str, Any], mudbase: dict[str, Any]) -> list[str]:
    interval, interval_shown = _raw_duration(raw.get("interval"), 60.0)
    timeout, timeout_shown = _raw_duration(mudbase.get("timeout"), 10.0)
    stale, stale_shown = _raw_duration(raw.get("stale_after"), None)
    if interval is None:
        return []
    problems = []
    if timeout is not None and timeout >= interval:
        problems.append(
            f"mudbase.timeout: {timeout_shown} must be shorter than interval ({interval_shown})"
        )
    if stale is not None and stale < interval:
        problems.append(f"stale_after: {stale_shown} must be at least interval ({interval_shown})")
    return problems


def _empty_file_problems(mudbase: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("token_file", "password_file", "api_key_file"):
        path = mudbase.get(key)
        if isinstance(path, str):
            try:
                empty = not read_token_file(Path(path))
            except FileReadError:
                continue  # reported by the schema check
            if empty:
                problems.append(f"mudbase.{key}: the file {path!r} is empty")
    return problems


def _resolve_credentials(
    settings: MudbaseSettings, env: Mapping[str, str]
) -> tuple[Credentials, str | None]:
    """The credentials the settings name; a problem if a secret file is empty."""
    if settings.email is not None:
        password, problem = _secret(
            settings.password, settings.password_file, "password_file", env.get(PASSWORD_ENV_VAR)
        )
        origin = _origin(settings.password, settings.password_file)
        return LoginCredentials(settings.email, password, origin, settings.password_file), problem
    if (
        settings.api_key is not None
        or settings.api_key_file is not None
        or (settings.token is None and settings.token_file is None and not env.get(TOKEN_ENV_VAR))
    ):
        key, problem = _secret(
            settings.api_key, settings.api_key_file, "api_key_file", env.get(API_KEY_ENV_VAR)
        )
        origin = _origin(settings.api_key, settings.api_key_file)
        return ApiKeyCredentials(key, origin, settings.api_key_file), problem
    token, problem = _secret(
        settings.token, settings.token_file, "token_file", env.get(TOKEN_ENV_VAR)
    )
    origin = _origin(settings.token, settings.token_file)
    return TokenCredentials(token, origin, settings.token_file), problem


def _secret(
    inline: SecretStr | None, file: Path | None, file_key: str, from_env: str | None
) -> tuple[SecretStr, str | None]:
    if inline is not None:
        return inline, None if inline.get_secret_value() else f"mudbase.{file_key[:-5]}: empty"
    if file is not None:
        try:
            value = read_token_file(file)
        except FileReadError as err:  # changed since the schema check read it
            return SecretStr(""), f"mudbase.{file_key}: {err}"
        problem = None if value else f"mudbase.{file_key}: the file {str(file)!r} is empty"
        return SecretStr(value), problem
    return SecretStr((from_env or "").strip()), None


def _origin(inline: SecretStr | None, file: Path | None) -> CredentialSource:
    return "config" if inline is not None else "file" if file is not None else "env"


class FileReadError(Exception):
    """A file that cannot be read as text; str() is `cannot read 'PATH': REASON`."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read {str(path)!r}: {reason}")


def os_reason(err: OSError) -> str:
    """An OS error's reason in lower case, without the errno or path: `permission denied`."""
    reason = err.strerror or type(err).__name__
    return reason[:1].lower() + reason[1:]


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's content. Raises FileReadError saying why it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FileReadError(path, os_reason(err)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileReadError(path, f"not UTF-8 text (byte {err.start})") from None


def read_token_file(path: Path) -> str:
    """The token in a file, surrounding whitespace removed (a mounted secret ends in a newline).
    Raises FileReadError saying why it cannot be read."""
    return read_text_file(path).strip()
