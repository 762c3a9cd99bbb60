"""APS regions: the ones a model may live in, and what the Viewer must be told about a model's region."""

from __future__ import annotations

#: Data-residency regions of OSS and Model Derivative (sent as the `region` header). Adding one is this line.
REGIONS: tuple[str, ...] = ("US", "EMEA", "AUS", "CAN", "DEU", "IND", "JPN", "GBR")


def viewer_api(region: str) -> str:
    """The Viewer's `api` option for a model in `region`: EMEA models stream from the EU endpoint."""
    return "streamingV2_EU" if region.upper() == "EMEA" else "streamingV2"
