"""Short human labels for the files of a model: Airflow's map index labels and the log lines use them.

    files_label(["incoming/a.ifc"])                          -> "a.ifc"
    files_label(["in/a.ifc", "in/b.ifc", "in/c.ifc", "in/d.obj"]) -> "a.ifc, b.ifc +2 more"
"""

from __future__ import annotations

from collections.abc import Sequence

LABELLED_NAMES = 2  # names shown before "+N more"
MAX_LABEL_CHARS = 120  # Airflow shows the label in narrow grid cells; long names are cut


def file_name(key: str) -> str:
    """The last path segment of an S3 key."""
    return key.rstrip("/").rsplit("/", 1)[-1] or key


def files_label(keys: Sequence[str]) -> str:
    """The first file names and how many more there are; "" for no files."""
    names = [file_name(key) for key in keys]
    label = ", ".join(names[:LABELLED_NAMES])
    if len(names) > LABELLED_NAMES:
        label += f" +{len(names) - LABELLED_NAMES} more"
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"
