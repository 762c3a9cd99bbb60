"""The `/viewer` page over real HTTP: a Content-Security-Policy with the pinned APS Viewer, no API key in
the page, and viewer tokens through an HttpOnly session cookie that the API key is traded for once."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx

from aps_api.api_keys import generate_api_key, list_keys, revoke_key
from aps_devstack import EmulatorServer
from tests.fixtures.api import (
    ResultsDB,
    RunningAPI,
    api,
    manifest_status,
    results_db,
    start_api,
    translate_in_emulator,
)
from tests.fixtures.client import wait_until

PINNED_VIEWER = "https://developer.api.autodesk.com/modelderivative/v2/viewers/7.109.0/"
SESSION_COOKIE = "aps_viewer_session"


def _csp(response: httpx.Response) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class _Scripts(HTMLParser):
    """The page's <script> elements: their src, and any inline code."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str | None] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.sources.append(dict(attrs).get("src"))
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


def _scripts(page: httpx.Response) -> _Scripts:
    parser = _Scripts()
    parser.feed(page.text)
    return parser


def _own_scripts(client: httpx.Client, page: httpx.Response) -> list[str]:
    """The JavaScript the page loads from this server (fetched like a browser would)."""
    texts = []
    for src in _scripts(page).sources:
        assert src is not None
        response = client.get(urljoin(str(page.url), src))
        assert response.status_code == 200, src
        assert response.headers["content-type"].startswith("text/javascript")
        texts.append(response.text)
    return texts


def test_viewer_page_has_a_csp_with_the_pinned_viewer_and_no_inline_script(api: RunningAPI):
    with api.client() as client:
        page = client.get("/viewer", params={"urn": "dXJu"})
        own_scripts = _own_scripts(client, page)
    assert page.status_code == 200
    csp = _csp(page)
    assert csp["script-src"] == ["'self'", PINNED_VIEWER]  # no inline code, no other host, no wildcard
    assert csp["default-src"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert "*" not in page.headers["content-security-policy"]
    assert PINNED_VIEWER + "viewer3D.min.js" in page.text
    assert PINNED_VIEWER + "style.min.css" in page.text
    scripts = _scripts(page)
    assert scripts.inline == []
    assert scripts.sources
    assert all(src and not src.startswith("http") for src in scripts.sources)  # from this server only
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    # The page never handles an API key: it has nowhere to keep one and sends none.
    for text in (page.text, *own_scripts):
        assert "sessionStorage" not in text
        assert "localStorage" not in text
        assert "Authorization" not in text


def test_sign_in_trades_the_key_for_an_http_only_session_cookie(
    results_db: ResultsDB,
    emulator: EmulatorServer,
    api: RunningAPI,
    translate_in_emulator: Callable[[str], str],
):
    urn = translate_in_emulator("signed-in.obj")
    results_db.add_model(urn=urn)
    key = results_db.key("browser")
    with api.client() as browser:  # keeps cookies like a browser
        sign_in = browser.get("/viewer/sign-in", params={"urn": urn})
        sign_in_scripts = _own_scripts(browser, sign_in)
        assert sign_in.status_code == 200
        csp = _csp(sign_in)
        assert csp["script-src"] == ["'self'"]  # the page that sees the key runs no third-party code
        assert csp["frame-ancestors"] == ["'none'"]
        assert "autodesk.com" not in sign_in.text
        assert _scripts(sign_in).inline == []

        assert browser.get("/viewer/viewer-token", params={"urn": urn}).status_code == 401  # no session yet
        wrong = browser.get("/viewer/session", headers={"Authorization": f"Bearer {generate_api_key()}"})
        assert wrong.status_code == 401
        assert "set-cookie" not in wrong.headers

        session = browser.get("/viewer/session", headers={"Authorization": f"Bearer {key}"})
        assert session.status_code == 204
        attributes = [part.strip().lower() for part in session.headers["set-cookie"].split(";")]
        assert attributes[0].startswith(SESSION_COOKIE + "=")
        assert {"httponly", "samesite=strict", "path=/viewer", "max-age=28800"} <= set(attributes)
        assert session.headers["cache-control"] == "no-store"

        token = browser.get("/viewer/viewer-token", params={"urn": urn})
        assert token.status_code == 200, token.text
        body = token.json()
        assert (body["urn"], body["scope"]) == (urn, f"data:read:{urn}")
        assert token.headers["cache-control"] == "no-store"
        assert manifest_status(emulator, urn, body["access_token"]) == 200
        page = browser.get("/viewer", params={"urn": urn})
        page_scripts = _own_scripts(browser, page)
        unknown = browser.get("/viewer/viewer-token", params={"urn": "dW5rbm93bg"})
        assert unknown.status_code == 404
        cookie = browser.cookies[SESSION_COOKIE]

    # The key appears in nothing the browser receives, the cookie included.
    for text in (sign_in.text, *sign_in_scripts, session.headers["set-cookie"], token.text, page.text,
                 *page_scripts):
        assert key not in text
    with api.client() as stranger:
        assert stranger.get("/viewer/viewer-token", params={"urn": urn}).status_code == 401
        # The page's token route takes the session cookie only, not a key.
        with_key = stranger.get(
            "/viewer/viewer-token", params={"urn": urn}, headers={"Authorization": f"Bearer {key}"}
        )
        assert with_key.status_code == 401
        stranger.cookies.set(SESSION_COOKIE, cookie[:-4] + ("AAAA" if cookie[-4:] != "AAAA" else "BBBB"))
        assert stranger.get("/viewer/viewer-token", params={"urn": urn}).status_code == 401


def test_viewer_session_ends_with_its_key_and_its_lifetime(
    results_db: ResultsDB,
    start_api: Callable[..., RunningAPI],
    translate_in_emulator: Callable[[str], str],
):
    urn = translate_in_emulator("short.obj")
    results_db.add_model(urn=urn)
    api = start_api(api_key_cache_seconds=0, viewer_session_seconds=1)
    revoked, expiring = results_db.key("to-revoke"), results_db.key("expiring")
    with api.client() as first, api.client() as second:
        for browser, key in ((first, revoked), (second, expiring)):
            signed_in = browser.get("/viewer/session", headers={"Authorization": f"Bearer {key}"})
            assert signed_in.status_code == 204
            assert browser.get("/viewer/viewer-token", params={"urn": urn}).status_code == 200
        key_id = next(k.id for k in list_keys(results_db.admin_url) if k.name == "to-revoke")
        assert revoke_key(results_db.admin_url, key_id)
        assert first.get("/viewer/viewer-token", params={"urn": urn}).status_code == 401
        cookie = second.cookies[SESSION_COOKIE]

    def refused() -> httpx.Response | None:
        # Sent on purpose after its Max-Age: the server itself must refuse the stale session.
        answer = httpx.get(f"{api.base_url}/viewer/viewer-token", params={"urn": urn},
                           headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}, timeout=30)
        return answer if answer.status_code != 200 else None

    # Past the one-second session lifetime (its timestamp has whole seconds: up to two).
    expired = wait_until(refused, timeout=30, interval=0.2, message="the stale session still works")
    assert expired.status_code == 401
    assert expired.json()["detail"] == "no viewer session or it has expired: sign in again"
