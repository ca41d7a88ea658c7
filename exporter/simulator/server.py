"""The simulator's HTTP API (aiohttp): Mudbase's endpoints plus `/_sim/*` controls."""

import asyncio
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from exporter.simulator.auth import AuthState
from exporter.simulator.faults import FAULT_KINDS, Fault, FaultTable
from exporter.simulator.limits import MUDBASE_API_LIMIT, MUDBASE_WINDOW, SlidingLimit
from exporter.simulator.model import SimFunction

MAX_LIMIT = 100
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Simulator:
    """The simulated platform: functions, tokens, faults, the per-IP limit and request counts."""

    def __init__(
        self,
        tokens: set[str],
        seed: int | None = None,
        api_limit: SlidingLimit | None = None,
    ) -> None:
        self.auth = AuthState(set(tokens))
        self.functions: dict[tuple[str, str], SimFunction] = {}
        self.faults = FaultTable()
        self.requests: Counter[str] = Counter()
        # Mudbase's own limit on all of /api/*, per client IP: on unless told otherwise
        self.api_limit = api_limit or SlidingLimit(MUDBASE_API_LIMIT, MUDBASE_WINDOW)
        self.rng = random.Random(seed)
        self.latency: tuple[float, float] = (0.0, 0.0)  # every API answer waits this long

    def add(self, function: SimFunction) -> None:
        self.functions[(function.project, function.id)] = function

    def function(self, project: str, function_id: str) -> SimFunction | None:
        found = self.functions.get((project, function_id))
        if found is not None:
            found.advance(time.time(), self.rng)
        return found


def _error(status: int, message: str, code: str) -> web.Response:
    body = {"success": False, "error": message, "code": code, "requestId": "sim"}
    return web.json_response(body, status=status)


_STATUS_CODES = {
    401: ("Invalid or expired token", "UNAUTHORIZED"),
    403: ("Access denied to this project", "FORBIDDEN"),
    404: ("Function not found", "NOT_FOUND"),
    429: ("Too many requests", "RATE_LIMITED"),
}


def _status_response(status: int) -> web.Response:
    message, code = _STATUS_CODES.get(status, ("Internal server error", "INTERNAL_ERROR"))
    return _error(status, message, code)


async def _faulty_response(
    fault: Fault, good: dict[str, Any], request: web.Request
) -> web.StreamResponse:
    if fault.kind == "latency":
        await asyncio.sleep(fault.latency)
        return web.json_response(good)
    if fault.kind == "status":
        return _status_response(fault.status)
    if fault.kind == "rate_limit":
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        body = {"success": False, "error": "Too many requests", "code": "RATE_LIMITED"}
        return web.json_response(body, status=429, headers=headers)
    if fault.kind == "malformed":
        return web.Response(
            body=b'{"success": true, "data": {"stats": ', content_type="application/json"
        )
    if fault.kind == "wrong_types":
        return web.json_response(
            {"success": True, "data": {"stats": {"totalExecutions": "many", "failed": [1]}}}
        )
    if fault.kind == "sparse":
        total = good["data"]["stats"].get("totalExecutions", 0)
        return web.json_response({"success": True, "data": {"stats": {"totalExecutions": total}}})
    return await _hang_mid_body(fault, good, request)


async def _hang_mid_body(
    fault: Fault, good: dict[str, Any], request: web.Request
) -> web.StreamResponse:
    body = json.dumps(good).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    await asyncio.sleep(fault.latency or 3600)
    return response


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else None


def _int_query(request: web.Request, name: str, default: int, low: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < low:
        raise web.HTTPBadRequest(
            text=json.dumps({"success": False, "error": f"invalid {name}"}),
            content_type="application/json",
        )
    return int(raw)


def build_app(sim: Simulator) -> web.Application:
    app = web.Application(middlewares=[_counting(sim)])
    app["sim"] = sim
    api = "/api/functions/projects/{project}/functions"
    app.router.add_get(api, _list_functions)
    app.router.add_get(api + "/{function}/logs", _function_logs)
    app.router.add_post("/api/auth/login", _login)
    app.router.add_post("/api/auth/refresh", _refresh)
    app.router.add_post("/_sim/auth", _configure_auth)
    app.router.add_get("/_sim/state", _state)
    app.router.add_post("/_sim/functions", _put_function)
    app.router.add_delete("/_sim/functions/{project}/{function}", _delete_function)
    app.router.add_post("/_sim/faults", _set_fault)
    app.router.add_delete("/_sim/faults", _clear_faults)
    app.router.add_post("/_sim/requests/reset", _reset_requests)
    app.router.add_post("/_sim/latency", _set_latency)
    app.router.add_post("/_sim/rate-limit", _set_rate_limit)
    return app


def _counting(sim: Simulator) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/auth/"):
            sim.requests[request.path.rsplit("/", 1)[1]] += 1
        elif request.path.startswith("/api/"):
            kind = "logs" if request.path.endswith("/logs") else "list"
            sim.requests[kind] += 1
        if request.path.startswith("/api/"):
            allowed, wait = sim.api_limit.allow(_client(request), time.time())
            if not allowed:
                return _rate_limit_exceeded(wait)
            if sim.latency[1] > 0:
                await asyncio.sleep(sim.rng.uniform(*sim.latency))
        return await handler(request)

    return middleware


def _rate_limit_exceeded(wait: float) -> web.Response:
    """Mudbase's answer once a client IP has spent its requests of the window."""
    seconds = max(1, math.ceil(wait))
    body = {
        "success": False,
        "error": "Too many requests from this IP, please try again later",
        "code": "RATE_LIMIT_EXCEEDED",
        "retryAfter": seconds,
    }
    return web.json_response(body, status=429, headers={"Retry-After": str(seconds)})


def _auth_error(request: web.Request, api_key_ok: bool) -> web.Response | None:
    """None if the request may proceed, else the 401 to send."""
    auth: AuthState = request.app["sim"].auth
    key = request.headers.get("X-API-Key")
    if key is not None:
        if api_key_ok and key in auth.api_keys:
            return None
        return _error(401, "Invalid API key", "UNAUTHORIZED")
    valid, code = auth.bearer_valid(_bearer(request))
    if valid:
        return None
    message = "Token expired" if code == "TOKEN_EXPIRED" else "Invalid or expired token"
    return _error(401, message, code)


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _auth_rate_limited(auth: AuthState, endpoint: str, wait: float) -> web.Response:
    """The 429 of an auth endpoint whose per-IP limit is spent."""
    auth.count(f"{endpoint}_rate_limited")
    seconds = max(1, round(wait))
    body = {
        "success": False,
        "error": f"Too many {endpoint} requests",
        "code": "RATE_LIMITED",
        "retryAfter": seconds,
    }
    return web.json_response(body, status=429, headers={"Retry-After": str(seconds)})


async def _login(request: web.Request) -> web.StreamResponse:
    auth: AuthState = request.app["sim"].auth
    allowed, wait = auth.login_limit.allow(_client(request), time.time())
    if not allowed:
        return _auth_rate_limited(auth, "login", wait)
    body = await request.json()
    issued = auth.login(body.get("email"), body.get("password"))
    if issued is None:
        return _error(401, "Invalid email or password", "INVALID_CREDENTIALS")
    return web.json_response({"success": True, "data": issued})


async def _refresh(request: web.Request) -> web.StreamResponse:
    auth: AuthState = request.app["sim"].auth
    allowed, wait = auth.refresh_limit.allow(_client(request), time.time())
    if not allowed:
        return _auth_rate_limited(auth, "refresh", wait)
    body = await request.json()
    issued = auth.refresh(body.get("refreshToken"))
    if issued is None:
        return _error(401, "Invalid refresh token", "INVALID_REFRESH_TOKEN")
    return web.json_response({"success": True, "data": issued})


async def _configure_auth(request: web.Request) -> web.StreamResponse:
    """Set users, API keys, static tokens, the session token TTL; or revoke every session.

    `{"users": {"a@b.c": "pw"}, "api_keys": ["k"], "tokens": ["t"], "token_ttl": 5,
    "revoke_all": true}`, every key optional.
    """
    auth: AuthState = request.app["sim"].auth
    body = await request.json()
    if "users" in body:
        auth.users = dict(body["users"])
    if "api_keys" in body:
        auth.api_keys = set(body["api_keys"])
    if "tokens" in body:
        auth.static_tokens = set(body["tokens"])
    if "token_ttl" in body:
        auth.token_ttl = float(body["token_ttl"])
    if body.get("revoke_all"):
        auth.revoke_all()
    return web.json_response({"ok": True})


async def _function_logs(request: web.Request) -> web.StreamResponse:
    sim: Simulator = request.app["sim"]
    project, function_id = request.match_info["project"], request.match_info["function"]
    limit = min(_int_query(request, "limit", 50, 1), MAX_LIMIT)
    offset = _int_query(request, "offset", 0, 0)
    fault = sim.faults.pick(project, function_id, sim.rng)
    if fault is not None and fault.kind == "status" and fault.status == 401:
        return _status_response(401)
    denied = _auth_error(request, api_key_ok=False)  # the logs endpoint takes JWTs only
    if denied is not None:
        return denied
    function = sim.function(project, function_id)
    if function is None:
        return _status_response(404)
    good = function.logs_json(limit, offset)
    if fault is not None:
        return await _faulty_response(fault, good, request)
    return web.json_response(good)


async def _list_functions(request: web.Request) -> web.StreamResponse:
    sim: Simulator = request.app["sim"]
    denied = _auth_error(request, api_key_ok=True)
    if denied is not None:
        return denied
    project = request.match_info["project"]
    page = _int_query(request, "page", 1, 1)
    limit = min(_int_query(request, "limit", 20, 1), MAX_LIMIT)
    now = time.time()
    functions = sorted(
        (f for (p, _), f in sim.functions.items() if p == project), key=lambda f: f.id
    )
    for function in functions:
        function.advance(now, sim.rng)
    chunk = functions[(page - 1) * limit : page * limit]
    pages = max(1, -(-len(functions) // limit))
    return web.json_response(
        {
            "success": True,
            "data": {
                "functions": [f.summary_json() for f in chunk],
                "pagination": {
                    "page": page,
                    "limit": limit,
                    "total": len(functions),
                    "totalPages": pages,
                },
            },
        }
    )


async def _state(request: web.Request) -> web.StreamResponse:
    sim: Simulator = request.app["sim"]
    now = time.time()
    functions = []
    for function in sim.functions.values():
        function.advance(now, sim.rng)
        functions.append(
            {
                "project": function.project,
                "id": function.id,
                "dialect": function.dialect,
                "failure_ratio": function.current_failure_ratio(now),
                "stats": function.stats_json(),
            }
        )
    return web.json_response(
        {
            "functions": functions,
            "faults": sim.faults.describe(),
            "requests": dict(sim.requests),
            "rate_limit": sim.api_limit.describe(),
            "auth": dict(sim.auth.counts),
        }
    )


_SETTABLE = {
    "name",
    "failure_delay",
    "trigger_type",
    "active",
    "dialect",
    "rate_per_minute",
    "failure_ratio",
    "drift_amplitude",
    "drift_period",
    "mean_execution_ms",
    "initial_executions",
    "error",
}


async def _put_function(request: web.Request) -> web.StreamResponse:
    """Create a function, or change the settings of an existing one."""
    sim: Simulator = request.app["sim"]
    body = await request.json()
    options = {k: v for k, v in body.items() if k in _SETTABLE}
    if set(body) - _SETTABLE - {"project", "id"}:
        raise web.HTTPBadRequest(text=f"unknown fields: {sorted(set(body) - _SETTABLE)}")
    existing = sim.function(body["project"], body["id"])
    if existing is None:
        sim.add(SimFunction(project=body["project"], id=body["id"], **options))
    else:
        for key, value in options.items():
            setattr(existing, key, value)
    return web.json_response({"ok": True})


async def _delete_function(request: web.Request) -> web.StreamResponse:
    sim: Simulator = request.app["sim"]
    sim.functions.pop((request.match_info["project"], request.match_info["function"]), None)
    return web.json_response({"ok": True})


async def _set_fault(request: web.Request) -> web.StreamResponse:
    """`{"project": "*", "function": "*", "kind": "status", "status": 503, ...}`."""
    sim: Simulator = request.app["sim"]
    body = await request.json()
    if body.get("kind") not in FAULT_KINDS:
        raise web.HTTPBadRequest(text=f"kind must be one of {', '.join(FAULT_KINDS)}")
    project, function = body.pop("project", "*"), body.pop("function", "*")
    sim.faults.set(project, function, Fault(**body))
    return web.json_response({"ok": True})


async def _clear_faults(request: web.Request) -> web.StreamResponse:
    sim: Simulator = request.app["sim"]
    sim.faults.clear(request.query.get("project"), request.query.get("function"))
    return web.json_response({"ok": True})


async def _reset_requests(request: web.Request) -> web.StreamResponse:
    """Start counting afresh: request counts, and the per-IP limit's windows and refusals."""
    sim: Simulator = request.app["sim"]
    sim.requests.clear()
    sim.api_limit.reset()
    return web.json_response({"ok": True})


async def _set_rate_limit(request: web.Request) -> web.StreamResponse:
    """`{"limit": 2000, "window": 900}`: the per-IP limit on /api/* (limit 0: none); the
    windows start empty."""
    sim: Simulator = request.app["sim"]
    body = await request.json()
    sim.api_limit = SlidingLimit(
        int(body.get("limit", MUDBASE_API_LIMIT)), float(body.get("window", MUDBASE_WINDOW))
    )
    return web.json_response({"ok": True})


async def _set_latency(request: web.Request) -> web.StreamResponse:
    """`{"min": 0.05, "max": 0.1}`: every API answer waits a random time in [min, max] s."""
    sim: Simulator = request.app["sim"]
    body = await request.json()
    low = float(body.get("min", 0))
    sim.latency = (low, max(low, float(body.get("max", low))))
    return web.json_response({"ok": True})
