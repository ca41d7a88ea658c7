"""Why a poll failed: a small fixed set of reasons, the `reason` label of the error counter."""

from enum import StrEnum


class Reason(StrEnum):
    """Why a poll failed; the `reason` label of mudbase_exporter_poll_errors_total."""

    AUTH = "auth"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    CLIENT_ERROR = "client_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_RESPONSE = "bad_response"
    INTERNAL = "internal"


_RETRYABLE = {Reason.RATE_LIMITED, Reason.SERVER_ERROR, Reason.TIMEOUT, Reason.CONNECTION}


class PollError(Exception):
    """A failed request, typed by reason. Its message never holds a credential."""

    def __init__(
        self,
        reason: Reason,
        detail: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.reason in _RETRYABLE
