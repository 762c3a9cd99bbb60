"""The reprocess form's output formats and IFC conversion settings (issue 24: retranslate "optionally other
formats or IFC conversion settings"); `ConversionMethod` is from Autodesk's modelderivative.yaml."""

from __future__ import annotations

import pytest

from aps_pipeline.config import OutputFormat
from aps_pipeline.dedupe import translation_profile
from aps_pipeline.reprocess import reprocess_formats

PIPELINE = [OutputFormat(type="svf2", views=["2d", "3d"]), OutputFormat(type="thumbnail")]


def test_without_form_formats_or_settings_the_pipelines_formats_stay() -> None:
    assert reprocess_formats(PIPELINE, [], None) is None


def test_form_formats_replace_the_pipelines_and_views_go_to_svf_formats_only() -> None:
    formats = reprocess_formats(PIPELINE, ["svf", "obj"], None)
    assert [f.as_aps() for f in formats or []] == [{"type": "svf", "views": ["2d", "3d"]}, {"type": "obj"}]


def test_an_ifc_conversion_method_goes_to_every_svf_format_and_makes_another_profile() -> None:
    formats = reprocess_formats(PIPELINE, [], "v3") or []
    assert [f.as_aps() for f in formats] == [
        {"type": "svf2", "views": ["2d", "3d"], "advanced": {"conversionMethod": "v3"}},
        {"type": "thumbnail"},
    ]
    assert translation_profile([f.as_aps() for f in formats]) != translation_profile(
        [f.as_aps() for f in PIPELINE])


def test_an_unknown_conversion_method_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="legacy, modern, v3"):
        reprocess_formats(PIPELINE, ["svf2"], "fast")
