"""What a run notification says and when one is due (the Airflow side only delivers it).

    events = due_events(notify, run_failed=False, counts={"failed": 1, "rejected": 0})   # {"files_failed"}
    changes = change_lines(versions)     # ["12 elements changed in incoming/floor.ifc (version 3 ...)"]
    message = run_message("aps_ingest", run_id, events, summary_line, run_page_url, changes=changes)
    message.subject, message.text, message.html

The message carries the pipeline, the run, the summary line and the run page's link: nothing from a
connection, so no secret can travel in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

from aps_pipeline.config import NotifyConfig, NotifyEvent
from aps_versions.reports import FileVersion

_HEADLINES: dict[str, str] = {
    "run_failed": "the run failed",
    "files_failed": "files failed",
    "files_rejected": "files were rejected",
    "elements_changed": "elements changed",
}


@dataclass(frozen=True)
class RunMessage:
    subject: str
    text: str
    html: str


def due_events(notify: NotifyConfig, *, run_failed: bool, counts: Mapping[str, int] | None,
               changes: Sequence[str] = ()) -> list[str]:
    """The events of this run that the pipeline's `notify:` asks to hear about, in a fixed order."""
    counts = counts or {}
    happened: dict[NotifyEvent, bool] = {
        "run_failed": run_failed,
        "files_failed": counts.get("failed", 0) > 0,
        "files_rejected": counts.get("rejected", 0) > 0,
        "elements_changed": bool(changes),
    }
    return [event for event, yes in happened.items() if yes and event in notify.on]


def change_lines(versions: Iterable[FileVersion]) -> list[str]:
    """One line per loaded version whose elements differ from the version before it (its stored diff)."""
    lines = []
    for version in versions:
        if not version.counts or not version.elements_changed:
            continue
        counts, total = version.counts, version.elements_changed
        lines.append(f"{total} element{'' if total == 1 else 's'} changed in {version.document_key} "
                     f"(version {version.number} against {version.previous}: {counts['added']} added, "
                     f"{counts['removed']} removed, {counts['changed']} changed)")
    return lines


def run_message(
    pipeline: str, run_id: str, events: list[str], summary_line: str | None, run_page_url: str,
    reason: str | None = None, changes: Sequence[str] = (),
) -> RunMessage:
    """The notification for one run: subject, plain text (webhooks) and HTML (e-mail)."""
    headline = ", ".join(_HEADLINES[event] for event in events) or "run finished"
    subject = f"[{pipeline}] {headline}: {run_id}"
    lines = [
        f"Pipeline {pipeline}, run {run_id}: {headline}.",
        summary_line or "summary: not written (the run stopped before its summary)",
    ]
    if reason:
        lines.append(f"reason: {reason}")
    lines.extend(changes)
    lines.append(f"run page: {run_page_url}")
    text = "\n".join(lines)
    body = "".join(f"<p>{escape(line)}</p>" for line in lines[:-1])
    html = f'{body}<p><a href="{escape(run_page_url)}">Open the run page</a> ({escape(run_page_url)})</p>'
    return RunMessage(subject=subject, text=text, html=html)


def budget_message(pipeline: str, line: str, threshold: int, run_page_url: str) -> RunMessage:
    """The notice that a budget reached `threshold` percent this period (`line`: the budget's use)."""
    headline = ("budget spent: files wait for the next period" if threshold >= 100
                else f"{threshold}% of a budget used")
    subject = f"[{pipeline}] {headline}"
    lines = [f"Pipeline {pipeline}: {headline}.", f"budget: {line}",
             "Raise the budget in the pipelines file, or wait for the period to roll over: waiting files "
             "continue by themselves.", f"run page: {run_page_url}"]
    body = "".join(f"<p>{escape(text)}</p>" for text in lines[:-1])
    html = f'{body}<p><a href="{escape(run_page_url)}">Open the run page</a> ({escape(run_page_url)})</p>'
    return RunMessage(subject=subject, text="\n".join(lines), html=html)
