"""What an operator sees, on the stack `make up` starts: the README's first file, the run page, the links and
the mapped task labels, over HTTP and in a real browser (Playwright on the system Chromium).

One `up` for the module (schedule and S3 events off, so only the test's run claims the files: with events on,
an event-driven run could take one of them first). The README's first-file commands run as written (in a
folder whose `.venv` is this repository's), a file without metadata lands beside them, and one manual run of
`aps_ingest` must load the first and reject the second with a clear reason. Screenshots stay in the test's
temporary folder.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from aps_devstack.cli import FIRST_FILE
from aps_devstack.process import free_port
from aps_devstack.s3 import S3Server
from aps_devstack.stack import LANDING_BUCKET, LANDING_PREFIX, REPO_ROOT
from tests.fixtures.browser import browser
from tests.fixtures.client import wait_until

# `up`, a run and the browser in the first test's fixture: more than the suite's default per-test timeout.
pytestmark = [pytest.mark.airflow_stack, pytest.mark.timeout(1800)]

DAG_ID = "aps_ingest"
RUN_TIMEOUT = 900  # a run takes one to two minutes on a quiet machine; shared CI machines are slower
ORPHAN_KEY = f"{LANDING_PREFIX}orphan.obj"  # landed without metadata: must be rejected, saying why


@dataclass
class Stack:
    ui: str
    password: str
    token: str
    up_output: str
    run_id: str
    run_state: str
    workdir: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.ui}{path}", headers=self.headers(), timeout=120, **kwargs)


def readme_first_file_commands() -> list[str]:
    """The shell lines of the README block under `<!-- first-file -->`."""
    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"<!-- first-file -->\s*```bash\n(.*?)```", readme, re.DOTALL)
    assert block, "README has no first-file block"
    return [line for line in block[1].splitlines() if line.strip() and not line.startswith("#")]


def _wait_for_run(stack_ui: str, token: str, run_id: str) -> str:
    state: list[str | None] = [None]  # the last one read, for the failure message

    def finished() -> str | None:
        try:
            response = httpx.get(f"{stack_ui}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", timeout=60,
                                 headers={"Authorization": f"Bearer {token}"})
        except httpx.TimeoutException:  # a busy api-server (one worker) answers late: ask again
            return None
        state[0] = response.json().get("state")
        return state[0] if state[0] in ("success", "failed") else None

    return wait_until(finished, timeout=RUN_TIMEOUT, interval=2,
                      message=lambda: f"run {run_id} still {state[0]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("operator-ui")
    port = free_port()
    env = {**os.environ, "APS_STACK_DIR": str(root / "up"), "AIRFLOW_UI_PORT": str(port),
           "APS_INGEST_SCHEDULE": "none", "APS_DEVSTACK_EVENTS": "0"}
    command = [sys.executable, "-m", "aps_devstack"]
    up = subprocess.run([*command, "up"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        password = re.search(r"user admin, password (\S+)", up.stdout)
        assert password, up.stdout
        ui = f"http://127.0.0.1:{port}"
        token = httpx.post(f"{ui}/auth/token", json={"username": "admin", "password": password[1]},
                           timeout=120).json()["access_token"]

        # The README's first file, as a new user types it, from a folder with the project's venv.
        workdir = root / "user"
        workdir.mkdir()
        (workdir / ".venv").symlink_to(REPO_ROOT / ".venv")
        for line in readme_first_file_commands():
            result = subprocess.run(line, shell=True, cwd=workdir, env=env, capture_output=True, text=True,
                                    timeout=120)
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        # And one file dropped without any metadata.
        state = json.loads((root / "up" / "state.json").read_text())
        S3Server(endpoint_url=state["s3_endpoint_url"]).client().put_object(
            Bucket=LANDING_BUCKET, Key=ORPHAN_KEY, Body=b"o cube\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")

        headers = {"Authorization": f"Bearer {token}"}
        wait_until(lambda: httpx.get(f"{ui}/api/v2/dags/{DAG_ID}", headers=headers, timeout=120).status_code
                   == 200, timeout=180, interval=2, message="aps_ingest was not parsed")
        run_id = "manual__first_file"
        triggered = httpx.post(f"{ui}/api/v2/dags/{DAG_ID}/dagRuns", headers=headers, timeout=120,
                               json={"dag_run_id": run_id, "logical_date": None, "conf": {}})
        assert triggered.status_code < 300, triggered.text
        run_state = _wait_for_run(ui, token, run_id)
        yield Stack(ui=ui, password=password[1], token=token, up_output=up.stdout, run_id=run_id,
                    run_state=run_state, workdir=workdir)
    finally:
        down = subprocess.run([*command, "down"], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr


def run_page_path(run_id: str) -> str:
    return f"/aps/runs/{DAG_ID}/{quote(run_id, safe='')}"


def test_up_prints_the_readme_first_file_commands(stack: Stack) -> None:
    assert readme_first_file_commands() == list(FIRST_FILE)
    for line in FIRST_FILE:
        assert line in stack.up_output


def test_the_readme_first_file_loads_and_a_file_without_metadata_is_rejected_saying_why(stack: Stack) -> None:
    assert stack.run_state == "success"
    page = stack.get(run_page_path(stack.run_id))
    assert page.status_code == 200, page.text
    rows = dict(re.findall(r'<tr class="file" data-key="([^"]+)" data-state="([^"]+)">', page.text))
    assert rows == {f"{LANDING_PREFIX}model.ifc": "loaded", ORPHAN_KEY: "rejected"}
    assert "no metadata: put a sidecar" in page.text
    assert "project:</span> demo" in page.text
    assert "discipline:</span> architecture" in page.text
    assert "summary: discovered=2 loaded=1 rejected=1 failed=0 lost=0" in " ".join(page.text.split())


def test_run_page_and_its_parts_need_an_airflow_login(stack: Stack) -> None:
    page = stack.get(run_page_path(stack.run_id))
    thumbnail = re.search(r'src="(/aps/dags/[^"]+/thumbnail\.png)"', page.text)
    assert thumbnail, page.text
    for path in (run_page_path(stack.run_id), thumbnail[1]):
        assert httpx.get(f"{stack.ui}{path}", timeout=120).status_code == 401
        forged = httpx.get(f"{stack.ui}{path}", cookies={"_token": "not-a-token"}, timeout=120)
        assert forged.status_code in (401, 403)
    png = stack.get(thumbnail[1])
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    # The view counts the loaded model has: at least one view, objects and properties from the IFC.
    counts = re.search(r'<div class="counts">(\d+) objects, (\d+) properties</div>', page.text)
    assert counts
    assert int(counts[1]) > 0
    assert int(counts[2]) > 0


def test_extra_links_open_pages_that_work_when_logged_in(stack: Stack) -> None:
    links = stack.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{stack.run_id}/taskInstances/"
                      "models.wait_for_translations/links", params={"map_index": 0})
    assert links.status_code == 200, links.text
    run_page = links.json()["extra_links"]["APS files"]  # a batch's wait links to the run's files
    assert run_page.startswith(f"{stack.ui}/aps/runs/{DAG_ID}/")
    listed = httpx.get(run_page, headers=stack.headers(), timeout=120)
    assert listed.status_code == 200
    viewer_href = re.search(r'href="([^"]+/viewer\?urn=[^"]+)"', listed.text)
    manifest_href = re.search(r'href="([^"]+/manifest\?urn=[^"]+)"', listed.text)
    assert viewer_href, listed.text[:2000]
    assert manifest_href, listed.text[:2000]
    manifest = stack.ui + html.unescape(manifest_href[1])
    viewer = stack.ui + html.unescape(viewer_href[1])
    assert manifest.startswith(f"{stack.ui}/aps/dags/{DAG_ID}/manifest?urn=")
    assert viewer.startswith(f"{stack.ui}/aps/dags/{DAG_ID}/viewer?urn=")
    assert httpx.get(manifest, timeout=120).status_code == 401
    page = httpx.get(manifest, headers=stack.headers(), timeout=120)
    assert page.status_code == 200
    stored = json.loads(re.search(r'<pre id="manifest">(.*?)</pre>', page.text, re.DOTALL)[1]
                        .replace("&#34;", '"').replace("&quot;", '"'))
    assert stored["status"] == "success"
    viewer_page = httpx.get(viewer, headers=stack.headers(), timeout=120)
    assert viewer_page.status_code == 200
    token_path = re.search(r'const tokenPath = "([^"]+)"', viewer_page.text)
    assert token_path
    token = httpx.get(token_path[1].replace("\\u0026", "&"), headers=stack.headers(), timeout=120)
    assert token.status_code == 200, token.text
    urn = parse_qs(urlsplit(viewer).query)["urn"][0]
    assert token.json()["scope"] == f"data:read:{urn}"  # this model only, as the results API's default
    assert token.json()["access_token"]


def test_an_operator_logs_in_and_sees_labels_run_page_and_thumbnail(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{stack.ui}/", wait_until="domcontentloaded")
        page.locator("input[name=username]").fill("admin")
        page.locator("input[name=password]").fill(stack.password)
        page.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"), timeout=60_000)

        run = f"{stack.ui}/dags/{DAG_ID}/runs/{quote(stack.run_id, safe='')}"
        page.goto(run)
        page.get_by_text(stack.run_id).first.wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "1-run.png", full_page=True)

        # The run's "APS files" tab: the run page in an iframe, with the thumbnail drawn.
        page.goto(f"{run}/plugin/aps-run-files")
        frame = page.frame_locator("iframe")
        frame.locator('tr[data-key$="model.ifc"]').wait_for(timeout=60_000)
        assert frame.locator('tr[data-key$="model.ifc"]').get_attribute("data-state") == "loaded"
        assert "no metadata" in frame.locator('tr[data-key$="orphan.obj"]').inner_text()
        thumbnail = frame.locator("img.thumbnail").first
        thumbnail.wait_for(timeout=30_000)
        wait_until(lambda: thumbnail.evaluate("img => img.complete && img.naturalWidth"), timeout=30,
                   interval=0.5, message="the thumbnail did not load")
        assert thumbnail.evaluate("img => img.naturalWidth") > 0
        page.screenshot(path=tmp_path / "2-run-page.png", full_page=True)

        # The mapped batch tasks are labelled with their files' names, not 0, 1, 2.
        page.goto(f"{run}/tasks/models.wait_for_translations/mapped")
        page.get_by_text("model.ifc").first.wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "3-mapped-tasks.png", full_page=True)

        # One task instance, and its own "APS files" tab.
        task = f"{run}/tasks/models.wait_for_translations/mapped/0"
        page.goto(task)
        page.get_by_text("model.ifc").first.wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "4-task.png", full_page=True)
        page.goto(f"{task}/plugin/aps-task-files")
        page.frame_locator("iframe").locator('tr[data-key$="model.ifc"]').wait_for(timeout=60_000)
        page.screenshot(path=tmp_path / "5-task-run-page.png", full_page=True)
    finally:
        context.close()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "1-run.png", "2-run-page.png", "3-mapped-tasks.png", "4-task.png", "5-task-run-page.png"]
