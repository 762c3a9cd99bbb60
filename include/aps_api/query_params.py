"""The query parameters the results routes share, with their real constraints written into the OpenAPI
document: what a parameter's schema allows is what the route accepts, and the other way round."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.dependencies.utils import get_flat_dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from aps_api.pagination import CURSOR_PATTERN, MAX_CURSOR_LENGTH

# Free-text filters: bounded, and without NUL characters (PostgreSQL text cannot hold them).
NO_NUL = r"^[^\x00]*$"
TextFilter = Annotated[str | None, Query(max_length=1024, pattern=NO_NUL)]
Cursor = Annotated[str | None, Query(
    min_length=1, max_length=MAX_CURSOR_LENGTH, pattern=CURSOR_PATTERN,
    description="`next_cursor` of the previous page, unchanged; a cursor this API did not issue is refused "
                "with 422",
)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]

# RFC 3339's date-time (JSON Schema's `date-time` format): a date, `T`, a time with seconds and an offset.
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
                      r"(?:([Zz])|([+-])(\d{2}):(\d{2}))")


def parse_date_time(text: str) -> datetime | None:
    """An RFC 3339 date-time as an aware datetime; None when `text` is not one. A leap second (:60) is read
    as :59, which the database's timestamps cannot tell apart."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7) or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    try:
        if match.group(8):
            zone = UTC
        else:
            hours, minutes = int(match.group(10)), int(match.group(11))
            if hours > 23 or minutes > 59:
                return None
            sign = -1 if match.group(9) == "-" else 1
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        return datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=zone)
    except ValueError:  # no such day or time (2021-02-30, 25:00)
        return None


async def _updated_since(
    updated_since: Annotated[str | None, Query(
        max_length=64, description="RFC 3339 date-time with an offset, e.g. `2026-01-31T12:00:00Z`",
        json_schema_extra={"format": "date-time"},
    )] = None,
) -> datetime | None:
    if updated_since is None:
        return None
    parsed = parse_date_time(updated_since)
    if parsed is None:
        error = {"type": "datetime_from_date_parsing", "loc": ("query", "updated_since"),
                 "msg": "not an RFC 3339 date-time with an offset (e.g. 2026-01-31T12:00:00Z)",
                 "input": updated_since}
        raise RequestValidationError([error])
    return parsed


UpdatedSince = Annotated[datetime | None, Depends(_updated_since)]


_DECLARED_QUERY: dict[int, frozenset[str]] = {}  # by id() of the route (routes live as long as the app)


def _declared_query(route: APIRoute) -> frozenset[str]:
    declared = _DECLARED_QUERY.get(id(route))
    if declared is None:
        declared = frozenset(param.alias for param in get_flat_dependant(route.dependant).query_params)
        _DECLARED_QUERY[id(route)] = declared
    return declared


async def known_query_only(request: Request) -> None:
    """Refuse (422) a query parameter the route does not declare: the document lists each route's parameters
    and allows no others, so a misspelt filter is an error rather than silently ignored."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params) - _declared_query(route))
    if unknown:
        raise RequestValidationError([
            {"type": "extra_forbidden", "loc": ("query", name), "msg": "unknown query parameter",
             "input": request.query_params[name]} for name in unknown])
