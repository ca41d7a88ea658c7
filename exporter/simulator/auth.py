"""The simulator's auth: static tokens, expiring JWT-shaped session tokens with rotating refresh
tokens (reusing an old one revokes the session), API keys, and the auth endpoints' rate limits."""

import base64
import json
import secrets
import time
from dataclasses import dataclass, field

from exporter.simulator.limits import SlidingLimit

REMEMBERED_REFRESH_TOKENS = 10_000  # used ones, to detect reuse; the oldest are forgotten


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class AuthState:
    static_tokens: set[str]
    users: dict[str, str] = field(default_factory=dict)
    api_keys: set[str] = field(default_factory=set)
    token_ttl: float = 1800.0
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> session, exp
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # current ones -> session
    used_refresh_tokens: dict[str, str] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    login_limit: SlidingLimit = field(default_factory=lambda: SlidingLimit(20))
    refresh_limit: SlidingLimit = field(default_factory=lambda: SlidingLimit(60))
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def bearer_valid(self, token: str | None, now: float | None = None) -> tuple[bool, str]:
        """(valid, reason code) for a bearer token."""
        if token is None:
            return False, "UNAUTHORIZED"
        if token in self.static_tokens:
            return True, ""
        session = self.tokens.get(token)
        if session is None or session[0] in self.revoked:
            return False, "UNAUTHORIZED"
        if (now or time.time()) >= session[1]:
            return False, "TOKEN_EXPIRED"
        return True, ""

    def login(self, email: object, password: object) -> dict[str, object] | None:
        if not isinstance(email, str) or self.users.get(email) != password:
            self.count("login_failed")
            return None
        self.count("login")
        return self._issue(secrets.token_hex(8), email)

    def refresh(self, refresh_token: object) -> dict[str, object] | None:
        if not isinstance(refresh_token, str):
            return None
        reused = self.used_refresh_tokens.get(refresh_token)
        if reused is not None:  # an old refresh token: the session is compromised
            self.revoked.add(reused)
            self.count("session_revoked")
            return None
        session = self.refresh_tokens.pop(refresh_token, None)
        if session is None or session in self.revoked:
            self.count("refresh_refused")
            return None
        self.used_refresh_tokens[refresh_token] = session
        while len(self.used_refresh_tokens) > REMEMBERED_REFRESH_TOKENS:
            del self.used_refresh_tokens[next(iter(self.used_refresh_tokens))]
        self.count("refresh")
        return self._issue(session, None)

    def revoke_all(self) -> None:
        sessions = {s for s, _ in self.tokens.values()} | set(self.refresh_tokens.values())
        self.revoked |= sessions

    def _issue(self, session: str, email: str | None) -> dict[str, object]:
        now = time.time()
        self.tokens = {t: s for t, s in self.tokens.items() if s[1] > now}  # expired: forgotten
        expires = now + self.token_ttl
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps({"sid": session, "sub": email, "exp": int(expires)}).encode())
        token = f"{header}.{payload}.{secrets.token_urlsafe(16)}"
        refresh = f"rt_{secrets.token_urlsafe(24)}"
        self.tokens[token] = (session, expires)
        self.refresh_tokens[refresh] = session
        return {"token": token, "refreshToken": refresh, "expiresIn": self.token_ttl}
