"""The APS pages inside the Airflow UI: a plugin FastAPI app at `aps_provider.links.RUN_PAGES_PREFIX`.

    GET /runs/{dag_id}/{run_id}                         every file of a run: state, reason, size, metadata,
                                                        views, object and property counts, thumbnail, APS
                                                        messages, links to the model
    GET /dags/{dag_id}/documents/{id}/diff?to=N         what changed in a document's version N (stored diff)
    GET /dags/{dag_id}/models/{model_id}/thumbnail.png  the model's thumbnail
    GET /dags/{dag_id}/manifest?urn=...                 the model's stored APS manifest
    GET /dags/{dag_id}/viewer?urn=...                   the model in the APS Viewer
    GET /dags/{dag_id}/viewer-token?urn=...             a `viewables:read` token for that page

A plugin app gets no authentication of its own: every route depends on Airflow's `requires_access_dag`, so
a request needs the UI's login (its cookie, or a bearer token) and read access to the DAG, else 401/403.
The pages read the results database through the pipeline's `reader_conn_id` (a login in `aps_reader`, which
can only SELECT) and show only what files of that pipeline (the DAG) use. Viewer tokens are minted as the
results API mints them (`aps_client.viewer`), with the pipeline's `aps` connection.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from aps_client import APSConfig, AsyncAPSClient
from aps_client.regions import viewer_api
from aps_client.urn import describe_urn
from aps_client.viewer import (
    VIEWER_CSS_URL,
    VIEWER_JS_URL,
    TokenMode,
    mint_viewer_token,
    viewer_client_config,
    viewer_scope,
)
from aps_pipeline.config import PipelineConfig, PipelineConfigError, get_pipeline
from aps_pipeline.labels import file_name
from aps_provider.links import manifest_path, viewer_path
from aps_results import run_report

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=select_autoescape(["html"])
)
_templates.filters["basename"] = file_name
_templates.filters["filesize"] = lambda n: f"{n / 1024**2:.1f} MiB" if n >= 1024**2 else f"{n / 1024:.1f} KiB"
_templates.globals.update(manifest_path=manifest_path, viewer_path=viewer_path)

_NO_STORE = {"Cache-Control": "no-store"}
_URN = Annotated[str, Query(min_length=1, max_length=1024, description="the model's URN")]

app = FastAPI(title="APS run pages", docs_url=None, redoc_url=None, openapi_url=None)


@cache
def reader_engine(conn_id: str) -> Engine:
    """One small pool per api-server process for the read-only login an Airflow connection holds."""
    from airflow.models.connection import Connection

    from aps_results.db import engine_from_connection

    conn = Connection.get_connection_from_secrets(conn_id)
    return engine_from_connection(conn, pool_size=2, max_overflow=2)


def _pipeline(dag_id: str) -> PipelineConfig:
    try:
        return get_pipeline(dag_id)
    except PipelineConfigError:
        raise HTTPException(status_code=404, detail=f"{dag_id!r} is not an APS ingest pipeline") from None


def _page(request: Request, template: str, **values: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(prefix=request.scope.get("root_path", ""), **values)
    return HTMLResponse(html, headers=_NO_STORE)


@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def run_page(request: Request, dag_id: str, run_id: str) -> HTMLResponse:
    pipeline = _pipeline(dag_id)
    from aps_pipeline.budget import period_use

    engine = reader_engine(pipeline.reader_conn_id)
    report = run_report.run_report(engine, pipeline.name, run_id)
    budget_use, waiting_budget = period_use(engine, pipeline)
    return _page(request, "run.html", report=report, budget_use=budget_use, waiting_budget=waiting_budget)


@app.get("/dags/{dag_id}/documents/{document_id}/diff", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET"))])
def diff_page(request: Request, dag_id: str, document_id: int,
              to: Annotated[int, Query(ge=2, description="the later version")]) -> HTMLResponse:
    pipeline = _pipeline(dag_id)
    diff = run_report.version_diff(reader_engine(pipeline.reader_conn_id), pipeline.name, document_id, to)
    if diff is None:
        raise HTTPException(status_code=404, detail=f"no stored diff into version {to} of document "
                                                    f"{document_id} in {dag_id}")
    return _page(request, "diff.html", pipeline=pipeline.name, diff=diff)


@app.get("/dags/{dag_id}/models/{model_id}/thumbnail.png", response_class=Response,
         dependencies=[Depends(requires_access_dag("GET"))])
def thumbnail(dag_id: str, model_id: int) -> Response:
    pipeline = _pipeline(dag_id)
    png = run_report.thumbnail_png(reader_engine(pipeline.reader_conn_id), pipeline.name, model_id)
    if png is None:
        raise HTTPException(status_code=404, detail=f"no thumbnail for model {model_id} in {dag_id}")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


def _stored(dag_id: str, urn: str) -> run_report.StoredManifest:
    pipeline = _pipeline(dag_id)
    stored = run_report.latest_manifest(reader_engine(pipeline.reader_conn_id), pipeline.name, urn)
    if stored is None:
        raise HTTPException(status_code=404, detail=f"no model with this URN in {dag_id}")
    return stored


@app.get("/dags/{dag_id}/manifest", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET"))])
def manifest_page(request: Request, dag_id: str, urn: _URN) -> HTMLResponse:
    stored = _stored(dag_id, urn)
    return _page(request, "manifest.html", model_id=stored.model_id, urn=urn, object=describe_urn(urn),
                 manifest=stored.manifest)


@app.get("/dags/{dag_id}/viewer", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET"))])
def viewer_page(request: Request, dag_id: str, urn: _URN) -> HTMLResponse:
    stored = _stored(dag_id, urn)
    token_path = str(request.url_for("viewer_token", dag_id=dag_id).include_query_params(urn=urn))
    return _page(request, "viewer.html", urn=urn, object=describe_urn(urn), token_path=token_path,
                 viewer_js_url=VIEWER_JS_URL, viewer_css_url=VIEWER_CSS_URL, api=viewer_api(stored.region))


def _viewer_config(dag_id: str, urn: str) -> APSConfig:
    """The pipeline's APS credentials, for a model of this pipeline (404 otherwise), as a viewer client's."""
    from airflow.models.connection import Connection

    from aps_provider.hooks.aps import config_from_connection

    stored = _stored(dag_id, urn)
    pipeline = _pipeline(dag_id)
    config = config_from_connection(Connection.get_connection_from_secrets(pipeline.aps_conn_id),
                                    region=stored.region)
    return viewer_client_config(config)


@app.get("/dags/{dag_id}/viewer-token", dependencies=[Depends(requires_access_dag("GET"))])
async def viewer_token(dag_id: str, urn: _URN) -> JSONResponse:
    """A read-only Viewer token (never the pipeline's own token), for a model of this pipeline."""
    # The database read and the connection lookup block: off the event loop.
    config = await run_in_threadpool(_viewer_config, dag_id, urn)
    scope = viewer_scope(TokenMode.PER_MODEL, urn)  # this model only, as the results API hands out
    async with AsyncAPSClient(config) as aps:
        token = await mint_viewer_token(aps, scope)
    body = {"access_token": token.access_token, "expires_in": token.expires_in(time.time()), "scope": scope}
    return JSONResponse(body, headers=_NO_STORE)
