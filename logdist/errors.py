"""The one error hierarchy. The HTTP layer maps each class to one status and a JSON body."""

from __future__ import annotations

from typing import Any


class LogdistError(Exception):
    """Base of every error logdist raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.detail is not None:
            body["detail"] = self.detail
        return body


class MalformedJSON(LogdistError):
    status = 400
    code = "malformed_json"


class BadRequest(LogdistError):
    status = 400
    code = "bad_request"


class PlainHttp(LogdistError):
    """Plain HTTP sent to a port that speaks TLS."""

    status = 400
    code = "plain_http_to_tls"


class Unauthorized(LogdistError):
    status = 401
    code = "unauthorized"


class Forbidden(LogdistError):
    status = 403
    code = "cross_origin"


class MisdirectedHost(LogdistError):
    """A request whose Host names a site this daemon does not answer to (DNS rebinding)."""

    status = 421
    code = "host_not_allowed"


class ReadOnly(LogdistError):
    """The read token, presented to a route that changes things."""

    status = 403
    code = "read_only"


class NotFound(LogdistError):
    status = 404
    code = "not_found"


class UnknownAnalyzer(NotFound):
    code = "unknown_analyzer"


class UnknownEmitter(NotFound):
    code = "unknown_emitter"


class UnknownDeadLetter(NotFound):
    code = "unknown_dead_letter"


class RequestTimeout(LogdistError):
    """The client stopped sending its body."""

    status = 408
    code = "request_timeout"


class Conflict(LogdistError):
    status = 409
    code = "conflict"


class AnalyzerExists(Conflict):
    code = "analyzer_exists"


class PayloadTooLarge(LogdistError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(LogdistError):
    status = 415
    code = "unsupported_media_type"


class InvalidRequest(LogdistError):
    """Well-formed JSON whose shape or values are wrong."""

    status = 422
    code = "invalid_request"


class InvalidPacket(InvalidRequest):
    code = "invalid_packet"


class PeerUnavailable(LogdistError):
    """A daemon this one relays to (an emitter's control API) did not answer."""

    status = 502
    code = "peer_unavailable"


class Backpressure(LogdistError):
    """The receiver is full; the sender keeps the data and retries after `retry_after` seconds."""

    status = 503
    code = "backpressure"

    def __init__(self, message: str, retry_after: float, detail: Any = None) -> None:
        super().__init__(message, detail)
        self.retry_after = retry_after


class Throttled(LogdistError):
    """The emitter holds more than its fair share while others send; it keeps the data and
    retries after `retry_after` seconds (429). Not Backpressure: it is not made to wait."""

    status = 429
    code = "throttled"

    def __init__(self, message: str, retry_after: float, detail: Any = None) -> None:
        super().__init__(message, detail)
        self.retry_after = retry_after


class SpoolFailure(Backpressure):
    """The spool could not be written; nothing was acknowledged."""

    code = "spool_failure"


class DeadLettersFull(Backpressure):
    """The dead-letter store is full: ingest waits until an operator replays or purges."""

    code = "dead_letters_full"


class DeadLetterWriteFailed(LogdistError):
    """The dead-letter file could not be rewritten after a replay or purge."""

    status = 500
    code = "dead_letter_write_failed"


class StateWriteFailed(LogdistError):
    """A runtime change could not be kept in the state dir; it was not made."""

    status = 500
    code = "state_write_failed"


class ConfigError(LogdistError):
    """A configuration file or command-line value that cannot be used."""

    status = 400
    code = "config_error"
