"""Which data-centre region a request names; each service passes it differently (aps-api.md §1)."""

from __future__ import annotations

from fastapi import Request

from aps_emulator.errors import APSHTTPError, body_for_path

REGIONS = ("US", "EMEA", "AUS", "CAN", "DEU", "IND", "JPN", "GBR", "APAC")
DEFAULT_REGION = "US"


def _normalise(request: Request, value: str) -> str:
    region = value.strip().upper()
    if region not in REGIONS:
        message = f"Invalid region '{value}'; expected one of {', '.join(REGIONS)}"
        raise APSHTTPError(400, body_for_path(request.url.path, 400, message))
    return region


def oss_region(request: Request) -> str | None:
    """OSS: header `x-ads-region` (docs, SDK) or `region` (spec), or query `region`. None when absent."""
    value = (request.headers.get("x-ads-region") or request.headers.get("region")
             or request.query_params.get("region"))
    return _normalise(request, value) if value else None


def md_region(request: Request) -> str:
    """Model Derivative: header `region` only (x-ads-region is not read here, as in APS); default US."""
    value = request.headers.get("region")
    return _normalise(request, value) if value else DEFAULT_REGION


def webhooks_region(request: Request) -> str:
    """Webhooks: header `x-ads-region` wins over query `region`; default US."""
    value = request.headers.get("x-ads-region") or request.query_params.get("region")
    return _normalise(request, value) if value else DEFAULT_REGION
