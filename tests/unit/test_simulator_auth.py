"""The simulator's session store forgets what it no longer needs (it runs for days in demos)."""

import pytest

from exporter.simulator import auth


def test_expired_tokens_are_forgotten_and_used_refresh_tokens_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("exporter.simulator.auth.time.time", lambda: clock[0])
    monkeypatch.setattr(auth, "REMEMBERED_REFRESH_TOKENS", 3)
    state = auth.AuthState(set(), users={"sre@example.com": "pw"}, token_ttl=60)
    session = state.login("sre@example.com", "pw")
    assert session is not None
    for _ in range(5):
        clock[0] += 61  # each token has expired by the next refresh
        session = state.refresh(session["refreshToken"])
        assert session is not None
        assert len(state.tokens) == 1  # only the live token is kept
    assert len(state.used_refresh_tokens) == 3
    assert state.bearer_valid(str(session["token"]))[0]
