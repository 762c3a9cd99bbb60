"""aps_client request policy: Retry-After, backoff, rate limiting, error mapping, token cache."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
import tenacity
from pydantic import SecretStr

from aps_client import APSConfig, Token
from aps_client.auth import TokenCache, cache_key
from aps_client.errors import (
    APSAuthError,
    APSConflictError,
    APSError,
    APSForbiddenError,
    APSNotFoundError,
    APSRateLimitedError,
    APSServerError,
)
from aps_client.ratelimit import RateLimiter, TokenBucket
from aps_client.transport import (
    RequestPolicy,
    RequestSpec,
    _RetryWait,
    error_from_response,
    parse_retry_after,
)

CFG = APSConfig(client_id="cid", client_secret=SecretStr("top-secret"), base_url="http://aps.test")


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("25") == 25.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def _response(
    status: int,
    body: object = None,
    headers: dict[str, str] | None = None,
    url: str = "http://aps.test/oss/v2/buckets/b/details?sig=SECRETSIG",
) -> httpx.Response:
    request = httpx.Request("GET", url, headers={"Authorization": "Bearer the-token"})
    if isinstance(body, dict):
        return httpx.Response(status, json=body, headers=headers, request=request)
    return httpx.Response(status, text=body or "", headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (401, APSAuthError, False),
        (403, APSForbiddenError, False),
        (404, APSNotFoundError, False),
        (409, APSConflictError, False),
        (429, APSRateLimitedError, True),
        (500, APSServerError, True),
        (503, APSServerError, True),
        (501, APSServerError, False),
        (408, APSServerError, True),
        (400, APSError, False),
    ],
)
def test_error_mapping(status: int, cls: type[APSError], retryable: bool) -> None:
    error = error_from_response(
        _response(status, {"reason": "Bucket already exists"}, {"x-ads-request-id": "rid-1"})
    )
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.status_code == status
    assert error.request_id == "rid-1"
    assert error.body == {"reason": "Bucket already exists"}
    text = str(error) + repr(error)
    assert "Bucket already exists" in text
    assert "rid-1" in text
    assert "SECRETSIG" not in text
    assert "the-token" not in text


def test_rate_limited_error_carries_retry_after_and_gateway_text() -> None:
    error = error_from_response(
        _response(429, {"developerMessage": "Quota limit exceeded."}, {"Retry-After": "7"})
    )
    assert isinstance(error, APSRateLimitedError)
    assert error.retry_after == 7.0
    assert "Quota limit exceeded." in str(error)


def test_503_retry_after_is_honoured_when_present() -> None:
    unavailable = error_from_response(
        _response(503, {"diagnostic": "Service Unavailable"}, {"Retry-After": "4"})
    )
    assert isinstance(unavailable, APSServerError)
    assert unavailable.retryable
    assert unavailable.retry_after == 4.0
    wait = _RetryWait(initial=0.01, maximum=0.02)
    assert 4.0 <= wait(_retry_state(unavailable)) <= 4.4  # Retry-After, not the (tiny) backoff
    plain = error_from_response(_response(503, {"diagnostic": "Service Unavailable"}))
    assert plain.retry_after is None
    assert wait(_retry_state(plain)) <= 1.02  # backoff plus jitter
    other = error_from_response(_response(500, {"diagnostic": "boom"}, {"Retry-After": "4"}))
    assert other.retry_after is None  # only 429 and 503 carry it


def test_non_json_error_body_is_kept_as_text() -> None:
    error = error_from_response(_response(503, "<Error>SlowDown</Error>"))
    assert error.body == "<Error>SlowDown</Error>"
    assert "SlowDown" in str(error)


def _retry_state(error: BaseException, attempt: int = 1) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_wait_honours_retry_after_with_small_jitter() -> None:
    wait = _RetryWait(initial=0.5, maximum=30)
    waited = wait(_retry_state(APSRateLimitedError("x", retry_after=10.0)))
    assert 10.0 <= waited <= 11.0


def test_wait_backs_off_exponentially_with_a_ceiling() -> None:
    wait = _RetryWait(initial=0.5, maximum=4)
    first = wait(_retry_state(APSServerError("x"), attempt=1))
    late = [wait(_retry_state(APSServerError("x"), attempt=9)) for _ in range(20)]
    assert 0.5 <= first <= 1.5
    assert all(4 <= w <= 5 for w in late)  # max plus at most 1 s of jitter


def test_policy_stops_after_max_attempts() -> None:
    config = CFG.model_copy(update={"max_attempts": 3, "backoff_initial": 0.0, "backoff_max": 0.0})
    calls = []

    def always_503() -> None:
        calls.append(1)
        error = APSServerError("down", status_code=503)
        error.retryable = True
        raise error

    args = RequestPolicy(config).retry_arguments()
    args["wait"] = tenacity.wait_none()
    with pytest.raises(APSServerError):
        tenacity.Retrying(**args)(always_503)
    assert len(calls) == 3


def test_policy_does_not_retry_client_errors() -> None:
    calls = []

    def not_found() -> None:
        calls.append(1)
        raise APSNotFoundError("gone", status_code=404)

    with pytest.raises(APSNotFoundError):
        tenacity.Retrying(**RequestPolicy(CFG).retry_arguments())(not_found)
    assert len(calls) == 1


def test_build_adds_bearer_and_base_url_but_not_for_absolute_urls() -> None:
    policy = RequestPolicy(CFG)
    token = Token(access_token="tok", expires_in=60)
    with httpx.Client() as http:
        request = policy.build(http, RequestSpec("GET", "/oss/v2/buckets/b/details"), token)
        assert str(request.url) == "http://aps.test/oss/v2/buckets/b/details"
        assert request.headers["authorization"] == "Bearer tok"
        s3 = policy.build(
            http, RequestSpec("PUT", "http://s3.test/part?sig=1", auth=False, content=b"x"), None
        )
        assert "authorization" not in s3.headers
        assert s3.url.host == "s3.test"


def test_token_spec_never_shows_the_secret_in_repr() -> None:
    spec = RequestPolicy(CFG).token_spec(("data:read",))
    assert "top-secret" not in repr(spec)
    assert spec.form == {"grant_type": "client_credentials", "scope": "data:read"}
    assert spec.headers is not None
    assert spec.headers["Authorization"].startswith("Basic ")


def test_token_bucket_allows_a_burst_then_spaces_requests() -> None:
    bucket = TokenBucket(per_minute=60)  # one per second after the burst
    now = bucket.updated
    assert all(bucket.reserve(now) == 0.0 for _ in range(60))
    assert bucket.reserve(now) == pytest.approx(1.0)
    assert bucket.reserve(now) == pytest.approx(2.0)  # reservations queue up
    assert bucket.reserve(now + 10) == 0.0  # refilled meanwhile


def test_rate_limiter_is_per_client_and_family_and_ignores_unlimited_families() -> None:
    limiter = RateLimiter()
    assert limiter.reserve("a", "md_forceget", 1) == 0.0
    assert limiter.reserve("a", "md_forceget", 1) > 50  # the second call in a minute waits ~60 s
    assert limiter.reserve("b", "md_forceget", 1) == 0.0  # another client id has its own bucket
    assert limiter.reserve("a", "md_job", 1) == 0.0  # another family too
    assert all(limiter.reserve("a", "oss", None) == 0.0 for _ in range(1000))
    assert all(limiter.reserve("a", None, 5) == 0.0 for _ in range(10))


def test_default_rate_limits_follow_the_published_figures() -> None:
    assert CFG.rate_limit("auth_token") == 500
    assert CFG.rate_limit("md_forceget") == 60
    assert CFG.rate_limit("hooks_write") == 50
    assert CFG.rate_limit("oss") is None


def test_token_cache_margin_and_invalidate() -> None:
    cache = TokenCache()
    key = cache_key(CFG, ("data:read",))
    fresh = Token(access_token="a", expires_in=3600, expires_at=time.time() + 3600)
    cache.put(key, fresh)
    assert cache.get(key, margin=300) is fresh
    assert cache.get(key, margin=4000) is None  # inside the refresh margin: treated as expired
    cache.invalidate(key, Token(access_token="other", expires_in=1))  # not the cached one: kept
    assert cache.get(key, margin=0) is fresh
    cache.invalidate(key, fresh)
    assert cache.get(key, margin=0) is None


def test_cache_key_separates_scope_sets_and_secrets_without_holding_the_secret() -> None:
    key = cache_key(CFG, ("data:read", "data:write"))
    assert key == cache_key(CFG, ("data:write", "data:read"))  # a set: order does not matter
    assert key != cache_key(CFG, ("data:read",))
    other_secret = CFG.model_copy(update={"client_secret": SecretStr("wrong")})
    assert key != cache_key(other_secret, ("data:read", "data:write"))
    assert "top-secret" not in repr(key)
