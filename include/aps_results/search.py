"""What portfolio search (`/v1/search`) relies on, beside the `aps.properties` table itself.

    NUMBER_WITH_UNIT     # the pattern of a value that is a number and a unit: `70 mm`, `18 m^2`
    landing_key("v")     # a document version's place in its document's landing order, as SQL

Search reads `aps.properties`, the same rows per-model reads do (see `aps_results.models.Property` for its
indexes, and `aps_api.queries` for the queries). `value_num` is the value's number even when a unit follows
it: APS writes lengths and areas as `70 mm`, `18 m^2`. The loader computes it once, where it flattens the
rows (`aps_results.records.parse_number`, with this pattern), so search's `min`/`max` and per-model reads
see the same number. `3'-6"` or `12 Main St` give none.
"""

from __future__ import annotations

#: A number and one unit word: `70 mm`, `18 m^2`, `-3.5e2 kN/m`, `20 °C`, `12.5 %` (not `1e400`: a unit
#: starting with e/E must not go on with a digit). Used by Python's `re` (the loader) and PostgreSQL's
#: regular expressions (migrations 0010 and 0014): no bounded repeats, lookaheads or [[:alpha:]] (each
#: made PostgreSQL's regex several times slower); it is tried on values of at most
#: NUMBER_WITH_UNIT_MAX_CHARS characters only, so the number never overflows a double. The capture group
#: is the number.
NUMBER_WITH_UNIT = (r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d\d?)?)"
                    r"\s*(?:[a-dA-Df-zF-Z°%µΩ]\S*|[eE](?:[^\d\s+-]\S*)?)\s*$")
NUMBER_WITH_UNIT_MAX_CHARS = 80
#: What a value that is a number starts with (after spaces): the cheap test before the regular expression.
NUMBER_STARTS = frozenset("0123456789+-.")


def landing_key(alias: str) -> str:
    """A document version's place in its document's landing order as one comparable SQL row value, for the
    `document_versions` row `alias`: landed_at, then s3_version_id with NULLs last (as ORDER BY sorts
    them), then file_id: aps_versions.documents.LANDING_ORDER, written so that `>` compares two rows (the
    search route's "no later version" test; tests/integration/test_api_search.py holds the two together)."""
    return (f"({alias}.landed_at, {alias}.s3_version_id IS NULL, coalesce({alias}.s3_version_id, ''), "
            f"{alias}.file_id)")
