"""A deterministic, plausible object tree for formats the emulator cannot read (RVT, DWG, NWD, ...).

Seeded by the source file's sha1, so the same bytes always give the same tree, names and externalIds.
"""

from __future__ import annotations

import random
import uuid

from aps_emulator.content.model import ModelContent, renumber_depth_first

CATEGORIES = {
    "Walls": ("Basic Wall", "Generic - 200mm"),
    "Floors": ("Floor", "Concrete - 250mm"),
    "Doors": ("Single-Flush", "0915 x 2134mm"),
    "Windows": ("Fixed", "0610 x 1220mm"),
    "Structural Columns": ("Concrete-Rectangular-Column", "300 x 450mm"),
    "Furniture": ("Desk", "1525 x 762mm"),
}


def synthetic_model(sha1: str, file_name: str, object_count: int) -> ModelContent:
    rng = random.Random(sha1)
    content = ModelContent()
    root = content.add(file_name, f"file:{file_name}", None,
                       {"File": {"Name": file_name, "Source Hash": sha1}})
    categories = rng.sample(sorted(CATEGORIES), k=min(len(CATEGORIES), max(2, object_count // 8)))
    category_ids = {
        name: content.add(name, str(uuid.UUID(int=rng.getrandbits(128))), root) for name in categories
    }
    for index in range(object_count):
        category = categories[index % len(categories)]
        family, type_name = CATEGORIES[category]
        element_id = rng.randint(100000, 999999)
        external_id = f"{uuid.UUID(int=rng.getrandbits(128))}-{element_id:08x}"
        content.add(
            f"{family} [{element_id}]",
            external_id,
            category_ids[category],
            {
                "Identity Data": {"Name": f"{family} [{element_id}]", "Type Name": type_name,
                                  "Mark": str(index + 1)},
                "Dimensions": {"Length": f"{rng.uniform(500, 12000):.1f} mm",
                               "Area": f"{rng.uniform(0.5, 80):.3f} m^2",
                               "Volume": f"{rng.uniform(0.01, 20):.3f} m^3"},
                "Constraints": {"Level": f"Level {rng.randint(1, 4)}"},
            },
        )
    return renumber_depth_first(content)
