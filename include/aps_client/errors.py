"""Typed errors. Each carries what a caller needs to act (status, APS's error body, request id) and never
the client secret or an access token: messages are built only from the method, the URL without its query
string (signed S3 URLs carry signatures there) and APS's own error text."""

from __future__ import annotations

from typing import Any


class APSError(Exception):
    """Any failed APS call. `retryable` tells whether another attempt (now, or at the next poll) may
    succeed; `retry_after` is the server's Retry-After in seconds (sent with 429 and sometimes 503), if any.
    `retries_spent` marks an error that already went through a full retry loop (a token fetch inside a
    request): an enclosing retry loop must not multiply those attempts. `ambiguous` says APS may have
    acted on the request although no success came back (a 5xx, or a connection lost after the request was
    sent), which matters for calls that are not idempotent."""

    retryable = False
    ambiguous = False
    retry_after: float | None = None
    retries_spent = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: dict[str, Any] | str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.method = method
        self.url = url

    def __str__(self) -> str:
        where = f" [{self.method} {self.url}]" if self.method and self.url else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{self.message}{where}{rid}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r})"


class APSAuthError(APSError):
    """401, or the token endpoint refused the client id/secret."""


class APSForbiddenError(APSError):
    """403: e.g. a bucket owned by another application, or a token without the needed scope."""


class APSNotFoundError(APSError):
    """404: missing bucket/object/manifest, or data that lives in another region."""


class APSConflictError(APSError):
    """409: e.g. the bucket or hook already exists."""


class APSRateLimitedError(APSError):
    """429 that outlasted the retries. `retry_after` is APS's last Retry-After, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class APSServerError(APSError):
    """5xx (or 408) that outlasted the retries."""


class APSTransportError(APSError):
    """The request never got an HTTP answer (connection refused/reset, timeout) even after retries."""

    retryable = True


class APSStillProcessingError(APSError):
    """APS kept answering 202 (still processing) past the configured polling time."""


class APSUploadError(APSError):
    """An upload could not finish: part retries or URL refreshes exhausted, or completion rejected.
    `bad_parts` lists the parts APS reported as not OK at completion."""

    def __init__(self, message: str, *, bad_parts: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.bad_parts = bad_parts or []


_BY_STATUS: dict[int, type[APSError]] = {
    401: APSAuthError,
    403: APSForbiddenError,
    404: APSNotFoundError,
    409: APSConflictError,
    429: APSRateLimitedError,
}
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Of those, the answers after which APS may have done the work: 429 and 408 say it did not.
AMBIGUOUS_STATUSES = frozenset({500, 502, 503, 504})


def error_class_for(status_code: int) -> type[APSError]:
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code == 408 or status_code >= 500:
        return APSServerError
    return APSError


def describe_body(body: dict[str, Any] | str | None) -> str:
    """APS's human text from any of its error shapes (aps-api.md §1): OSS `reason`, MD `diagnostic`,
    gateway/auth `developerMessage` (+ `errorCode`)."""
    if isinstance(body, dict):
        for key in (
            "reason",
            "diagnostic",
            "developerMessage",
            "message",
            "detail",
            "error_description",
            "error",
        ):
            text = body.get(key)
            if text:
                code = body.get("errorCode") or body.get("code")
                return f"{code}: {text}" if code and isinstance(code, str) else str(text)
        return ""
    return (body or "")[:300]
