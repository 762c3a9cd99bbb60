"""The one place for request policy, shared by the sync and the async client.

A call is described by a `RequestSpec` (pure data). `RequestPolicy` turns it into an httpx.Request (base
URL, bearer token, JSON/form body), decides what an answer means (typed error or result), and configures
tenacity: retry 429 (and 503 when it sends one) after `Retry-After`, retry 408/5xx/transport errors with
exponential backoff and jitter, bounded by attempts and total time. A 401 on an authenticated call drops
the cached token, fetches a new one and retries once. Tokens come from the process-wide cache (auth.py),
then, if `config.token_cache_dir` is set, from the cross-process token files (token_file.py).
`SyncTransport` and `AsyncTransport` differ only in how they do I/O.

Multi-step operations (poll on 202, fall back on 413) are written once as generators ("flows") that yield
`RequestSpec`s or `Sleep`s and receive responses; `run()` drives a flow with blocking or awaited I/O.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import random
import ssl
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import tenacity

from aps_client import auth, token_file
from aps_client.call_stats import ANSWERS, CALL_STATS, RETRIES, THROTTLED
from aps_client.config import APSConfig
from aps_client.errors import (
    AMBIGUOUS_STATUSES,
    RETRYABLE_STATUSES,
    APSAuthError,
    APSError,
    APSRateLimitedError,
    APSTransportError,
    describe_body,
    error_class_for,
)
from aps_client.models import Token
from aps_client.ratelimit import LIMITER

log = logging.getLogger("aps_client")

T = TypeVar("T")
REQUEST_ID_HEADERS = ("x-ads-request-id", "x-request-id", "x-amz-request-id")


@dataclass(frozen=True)
class RequestSpec:
    method: str
    path: str  # relative to base_url, or an absolute URL (signed S3 URLs)
    family: str | None = None  # rate-limit family (config.DEFAULT_RATE_LIMITS)
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = field(default=None, repr=False)  # may hold Basic credentials
    json: Any = field(default=None, repr=False)  # may hold a hook secret or an uploadKey
    form: dict[str, str] | None = field(default=None, repr=False)
    content: bytes | Iterable[bytes | memoryview] | None = field(default=None, repr=False)  # re-iterable
    auth: bool = True  # send "Authorization: Bearer <token>"
    scopes: tuple[str, ...] | None = None  # token scopes; None = config.scopes
    accept: frozenset[int] = frozenset()  # non-2xx statuses handed back to the caller instead of raised
    # False for calls that must not happen twice (POST /job): the transport then retries only failures
    # after which APS surely did nothing, and hands ambiguous ones to the flow, which looks before resending.
    idempotent: bool = True
    # SyncTransport leaves a 200's body unread: the caller iterates it (response.iter_bytes()) and closes
    # the response. Other answers, and every answer of AsyncTransport, are read as usual.
    stream: bool = False


@dataclass(frozen=True)
class Sleep:
    seconds: float


Flow = Generator[RequestSpec | Sleep, Any, T]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def redact_url(url: httpx.URL) -> str:
    """The URL without its query string: signed S3 URLs carry their signature there."""
    return str(url.copy_with(query=None))


def response_body(response: httpx.Response) -> dict[str, Any] | str | None:
    if not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        return response.text[:2000]
    return body if isinstance(body, dict) else {"value": body}


def error_from_response(response: httpx.Response) -> APSError:
    """The typed error for a failed answer: status, APS's error body and request id; no secrets."""
    status = response.status_code
    body = response_body(response)
    detail = describe_body(body)
    kwargs: dict[str, Any] = {
        "status_code": status,
        "body": body,
        "request_id": next((response.headers[h] for h in REQUEST_ID_HEADERS if h in response.headers), None),
        "method": response.request.method,
        "url": redact_url(response.request.url),
    }
    message = f"APS answered {status} {response.reason_phrase}" + (f": {detail}" if detail else "")
    cls = error_class_for(status)
    if cls is APSRateLimitedError:
        error: APSError = APSRateLimitedError(
            message, retry_after=parse_retry_after(response.headers.get("retry-after")), **kwargs
        )
    else:
        error = cls(message, **kwargs)
        if status == 503:  # "Service Unavailable" may say when to come back, as 429 does
            error.retry_after = parse_retry_after(response.headers.get("retry-after"))
    error.retryable = status in RETRYABLE_STATUSES  # 408, 429, 500, 502, 503, 504
    error.ambiguous = status in AMBIGUOUS_STATUSES
    return error


class _RetryWait(tenacity.wait.wait_base):
    """Retry-After when APS gives one (plus a little jitter so parallel callers do not return in lockstep),
    otherwise exponential backoff with jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = tenacity.wait_exponential_jitter(initial=initial, max=maximum)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return retry_after + random.uniform(0, min(1.0, 0.1 * retry_after))
        return self._backoff(retry_state)


def _worth_another_attempt(exc: BaseException, spec: RequestSpec | None) -> bool:
    if not getattr(exc, "retryable", False) or getattr(exc, "retries_spent", False):
        return False
    # A call that must not happen twice is retried only when APS surely did not act on it.
    return spec is None or spec.idempotent or not getattr(exc, "ambiguous", False)


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    CALL_STATS.count(RETRIES)
    error = retry_state.outcome.exception() if retry_state.outcome else None
    sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
    log.warning(
        "APS call failed (attempt %d), retrying in %.1fs: %s", retry_state.attempt_number, sleep, error
    )


class RequestPolicy:
    """Everything about a request that does not depend on sync vs async I/O."""

    def __init__(self, config: APSConfig) -> None:
        self.config = config

    def scopes(self, spec: RequestSpec) -> tuple[str, ...]:
        return spec.scopes or self.config.scopes

    def rate_limit_delay(self, spec: RequestSpec) -> float:
        return LIMITER.reserve(self.config.client_id, spec.family, self.config.rate_limit(spec.family))

    def build(
        self, http: httpx.Client | httpx.AsyncClient, spec: RequestSpec, token: Token | None
    ) -> httpx.Request:
        url = spec.path if spec.path.startswith(("http://", "https://")) else self.config.base_url + spec.path
        headers = dict(spec.headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token.access_token}"
        return http.build_request(
            spec.method,
            url,
            params=spec.params,
            headers=headers,
            json=spec.json,
            data=spec.form,
            content=spec.content,
        )

    def transport_error(self, request: httpx.Request, exc: httpx.TransportError) -> APSTransportError:
        error = APSTransportError(
            f"no answer from APS: {type(exc).__name__}: {exc}",
            method=request.method,
            url=redact_url(request.url),
        )
        # A request that never left (no connection) cannot have been acted on; any later loss may have been.
        error.ambiguous = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return error

    def check(self, spec: RequestSpec, response: httpx.Response) -> httpx.Response:
        """Return the response if it is a success or an accepted status, else raise the typed error."""
        status = response.status_code
        log.debug("%s %s -> %d", response.request.method, redact_url(response.request.url), status)
        CALL_STATS.count(ANSWERS)
        if status == 429:
            CALL_STATS.count(THROTTLED)
        if status < 300 or status in spec.accept:
            return response
        raise error_from_response(response)

    def retry_arguments(self, spec: RequestSpec | None = None) -> dict[str, Any]:
        cfg = self.config
        return {
            "stop": tenacity.stop_after_attempt(cfg.max_attempts)
            | tenacity.stop_before_delay(cfg.max_retry_seconds),
            "wait": _RetryWait(cfg.backoff_initial, cfg.backoff_max),
            "retry": tenacity.retry_if_exception(lambda exc: _worth_another_attempt(exc, spec)),
            "before_sleep": _log_retry,
            "reraise": True,  # callers get the last typed error, not tenacity.RetryError
        }

    def token_error(self, error: APSError) -> APSError:
        """The token endpoint says 400/401 for bad credentials: make that an APSAuthError naming the client
        id. Either way the token fetch already had its own retries, so the calling request must not retry;
        a 5xx or 429 stays `retryable`, so a poller may try again later."""
        if error.status_code in (400, 401):
            error = APSAuthError(
                auth.auth_failure(error.body, error.status_code, self.config.client_id),
                status_code=error.status_code,
                body=error.body,
                request_id=error.request_id,
                method=error.method,
                url=error.url,
            )
        error.retries_spent = True
        return error

    def forget_token(self, spec: RequestSpec, token: Token) -> None:
        """APS refused `token` (401): drop it from the process cache and from the token file, if any."""
        scopes = self.scopes(spec)
        auth.TOKENS.invalidate(auth.cache_key(self.config, scopes), token)
        files = token_file.file_cache(self.config)
        if files is not None:
            files.discard(token_file.file_key(self.config, scopes), token)

    def token_spec(self, scopes: tuple[str, ...]) -> RequestSpec:
        return RequestSpec(
            "POST",
            auth.TOKEN_PATH,
            family="auth_token",
            headers=auth.token_request_headers(self.config),
            form=auth.token_request_form(scopes),
            auth=False,
        )


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The process's one TLS context for APS (httpx's defaults: certifi's CAs, SSL_CERT_FILE/DIR honoured).

    httpx builds a new context per client, loading the whole CA bundle: ~30 ms of CPU, paid by every task
    process and every trigger that opens a client. A context holds no connection, so one built in a worker
    before it forks (aps_ingest_tasks.preload) serves every task process it starts."""
    return httpx.create_ssl_context()


class SyncTransport:
    def __init__(self, config: APSConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self.policy = RequestPolicy(config)
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=config.timeout, verify=shared_ssl_context())

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def token(self, scopes: tuple[str, ...] | None = None) -> Token:
        scopes = tuple(scopes or self.config.scopes)
        key = auth.cache_key(self.config, scopes)
        margin = self.config.token_refresh_margin
        cached = auth.TOKENS.get(key, margin)
        if cached is not None:
            return cached
        with auth.TOKENS.thread_lock(key):
            cached = auth.TOKENS.get(key, margin)
            if cached is not None:
                return cached
            files = token_file.file_cache(self.config)
            if files is None:
                token = self._fetch_token(scopes)
            else:
                # One process at a time per key does "check file -> fetch -> write"; the others then
                # find the fresh token in the file.
                file_key = token_file.file_key(self.config, scopes)
                with files.locked(file_key) as usable:
                    token = files.read(file_key, margin) if usable else None
                    if token is None:
                        token = self._fetch_token(scopes)
                        if usable:
                            files.write(file_key, token)
            auth.TOKENS.put(key, token)
            return token

    def _fetch_token(self, scopes: tuple[str, ...]) -> Token:
        try:
            response = self.send(self.policy.token_spec(scopes))
        except APSError as error:
            raise self.policy.token_error(error) from None
        return auth.parse_token(response, scopes, self.config)

    def send(self, spec: RequestSpec) -> httpx.Response:
        """One call with the full policy: rate limit, token, retries, 401 refresh, typed errors."""
        return tenacity.Retrying(**self.policy.retry_arguments(spec))(self._attempt, spec)

    def _attempt(self, spec: RequestSpec) -> httpx.Response:
        delay = self.policy.rate_limit_delay(spec)
        if delay > 0:
            time.sleep(delay)
        token = self.token(spec.scopes) if spec.auth else None
        response = self._send_once(spec, token)
        if response.status_code == 401 and token is not None:
            self.policy.forget_token(spec, token)
            response = self._send_once(spec, self.token(spec.scopes))
        return self.policy.check(spec, response)

    def _send_once(self, spec: RequestSpec, token: Token | None) -> httpx.Response:
        request = self.policy.build(self.http, spec, token)
        try:
            response = self.http.send(request, stream=spec.stream)
            if spec.stream and response.status_code != 200:
                response.read()  # the policy reads error bodies; reading closes the stream
            return response
        except httpx.TransportError as exc:
            raise self.policy.transport_error(request, exc) from None

    def run(self, flow: Flow[T]) -> T:
        """Drive a flow with blocking I/O. A failed request is raised inside the flow, which may handle it."""
        reply: Any = None
        try:
            while True:
                step = flow.throw(reply) if isinstance(reply, APSError) else flow.send(reply)
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    reply = None
                else:
                    try:
                        reply = self.send(step)
                    except APSError as error:
                        reply = error
        except StopIteration as done:
            return done.value


class AsyncTransport:
    def __init__(self, config: APSConfig, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.policy = RequestPolicy(config)
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=config.timeout, verify=shared_ssl_context())

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    async def token(self, scopes: tuple[str, ...] | None = None) -> Token:
        scopes = tuple(scopes or self.config.scopes)
        key = auth.cache_key(self.config, scopes)
        margin = self.config.token_refresh_margin
        cached = auth.TOKENS.get(key, margin)
        if cached is not None:
            return cached
        async with auth.TOKENS.loop_lock(key):
            cached = auth.TOKENS.get(key, margin)
            if cached is not None:
                return cached
            files = token_file.file_cache(self.config)
            if files is None:
                token = await self._fetch_token(scopes)
            else:
                # As in SyncTransport.token; the small file I/O runs in a thread.
                file_key = token_file.file_key(self.config, scopes)
                async with files.alocked(file_key) as usable:
                    token = await asyncio.to_thread(files.read, file_key, margin) if usable else None
                    if token is None:
                        token = await self._fetch_token(scopes)
                        if usable:
                            await asyncio.to_thread(files.write, file_key, token)
            auth.TOKENS.put(key, token)
            return token

    async def _fetch_token(self, scopes: tuple[str, ...]) -> Token:
        try:
            response = await self.send(self.policy.token_spec(scopes))
        except APSError as error:
            raise self.policy.token_error(error) from None
        return auth.parse_token(response, scopes, self.config)

    async def send(self, spec: RequestSpec) -> httpx.Response:
        return await tenacity.AsyncRetrying(**self.policy.retry_arguments(spec))(self._attempt, spec)

    async def _attempt(self, spec: RequestSpec) -> httpx.Response:
        delay = self.policy.rate_limit_delay(spec)
        if delay > 0:
            await asyncio.sleep(delay)
        token = await self.token(spec.scopes) if spec.auth else None
        response = await self._send_once(spec, token)
        if response.status_code == 401 and token is not None:
            await asyncio.to_thread(self.policy.forget_token, spec, token)
            response = await self._send_once(spec, await self.token(spec.scopes))
        return self.policy.check(spec, response)

    async def _send_once(self, spec: RequestSpec, token: Token | None) -> httpx.Response:
        request = self.policy.build(self.http, spec, token)
        try:
            return await self.http.send(request)
        except httpx.TransportError as exc:
            raise self.policy.transport_error(request, exc) from None

    async def run(self, flow: Flow[T]) -> T:
        """Drive a flow with awaited I/O (never blocks the event loop); failures are raised in the flow."""
        reply: Any = None
        try:
            while True:
                step = flow.throw(reply) if isinstance(reply, APSError) else flow.send(reply)
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    reply = None
                else:
                    try:
                        reply = await self.send(step)
                    except APSError as error:
                        reply = error
        except StopIteration as done:
            return done.value
