"""`GET /viewer?urn=<urn>`: a minimal page that shows a model in the APS Viewer.

The page is static: it reads the URN from its own address and asks the API for the model and a viewer
token from the browser. The API key is typed into the page (or passed as `#key=...`, a fragment browsers
never send to servers) and kept in the tab's sessionStorage, so it never appears in a URL the server logs.
The Airflow provider's extra link points here.
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from aps_api.deps import Context

router = APIRouter(tags=["viewer"])

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>APS model viewer</title>
<link rel="stylesheet" href="{css}">
<script src="{js}"></script>
<style>
  html, body {{ margin: 0; height: 100%; font-family: sans-serif; }}
  #bar {{ padding: 6px 10px; background: #f3f3f3; border-bottom: 1px solid #ccc; }}
  #viewer {{ position: absolute; top: 40px; bottom: 0; left: 0; right: 0; }}
  #message.error {{ color: #b00020; }}
</style>
</head>
<body>
<div id="bar">
  <form id="key-form" hidden>API key: <input id="key" type="password" size="50" autocomplete="off">
    <button>Open model</button></form>
  <span id="message"></span>
</div>
<div id="viewer"></div>
<script>
"use strict";
const urn = new URLSearchParams(location.search).get("urn");
const say = (text, error) => {{
  const el = document.getElementById("message");
  el.textContent = text; el.className = error ? "error" : "";
}};
const keyFromFragment = location.hash.startsWith("#key=") ? decodeURIComponent(location.hash.slice(5)) : null;
if (keyFromFragment) {{
  sessionStorage.setItem("aps-api-key", keyFromFragment);
  history.replaceState(null, "", location.pathname + location.search);  // drop the key from the address bar
}}

async function api(path) {{
  const key = sessionStorage.getItem("aps-api-key");
  const response = await fetch(path, {{headers: {{Authorization: "Bearer " + key}}}});
  const body = await response.json().catch(() => ({{}}));
  if (!response.ok) {{
    if (response.status === 401) sessionStorage.removeItem("aps-api-key");
    throw new Error(typeof body.detail === "string" ? body.detail : "HTTP " + response.status);
  }}
  return body;
}}

async function open() {{
  if (!urn) {{ say("add ?urn=<model urn> to the address", true); return; }}
  if (!sessionStorage.getItem("aps-api-key")) {{
    document.getElementById("key-form").hidden = false;
    return;
  }}
  document.getElementById("key-form").hidden = true;
  try {{
    const page = await api("v1/models?limit=1&urn=" + encodeURIComponent(urn));
    if (page.items.length === 0) {{ say("no model with this URN in the results database", true); return; }}
    const model = page.items[0];
    const tokenPath = "v1/models/" + model.id + "/viewer-token";
    const first = await api(tokenPath);
    say("model " + model.id + " (" + (model.source ? model.source.key : urn) + ")");
    const options = {{
      env: "AutodeskProduction2",
      api: first.region === "EMEA" ? "streamingV2_EU" : "streamingV2",
      getAccessToken: (done) => api(tokenPath).then((t) => done(t.access_token, t.expires_in))
                                              .catch((e) => say(e.message, true)),
    }};
    Autodesk.Viewing.Initializer(options, () => {{
      const viewer = new Autodesk.Viewing.GuiViewer3D(document.getElementById("viewer"));
      viewer.start();
      Autodesk.Viewing.Document.load("urn:" + urn,
        (doc) => viewer.loadDocumentNode(doc, doc.getRoot().getDefaultGeometry()),
        (code, text) => say("the Viewer could not load the model: " + (text || code), true));
    }});
  }} catch (error) {{
    say(error.message, true);
    if (!sessionStorage.getItem("aps-api-key")) document.getElementById("key-form").hidden = false;
  }}
}}

document.getElementById("key-form").addEventListener("submit", (event) => {{
  event.preventDefault();
  sessionStorage.setItem("aps-api-key", document.getElementById("key").value.trim());
  open();
}});
open();
</script>
</body>
</html>
"""


@router.get("/viewer", response_class=HTMLResponse, summary="Show a model in the APS Viewer (HTML page)")
async def viewer_page(
    context: Context,
    urn: Annotated[
        str | None, Query(max_length=1024, description="the model's URN (read by the page)")
    ] = None,
) -> HTMLResponse:
    settings = context.settings
    html = _PAGE.format(css=escape(settings.viewer_css_url), js=escape(settings.viewer_js_url))
    # The page only talks to this API and the Viewer's host.
    return HTMLResponse(html, headers={"Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"})
