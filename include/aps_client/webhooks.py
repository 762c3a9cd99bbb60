"""Webhooks for Model Derivative's `extraction.finished` event (aps-api.md §2.16-2.17), and the check of a
callback's `x-adsk-signature` header."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aps_client.transport import AsyncTransport, Flow, RequestSpec, SyncTransport, error_from_response

SYSTEM = "derivative"
EVENT = "extraction.finished"
HOOKS_PATH = f"/webhooks/v1/systems/{SYSTEM}/events/{EVENT}/hooks"
SIGNATURE_PREFIX = "sha1hash="
#: The PostgreSQL channel the results API's receiver NOTIFYs a verified callback's URN on, and the waiting
#: triggers LISTEN on (`WaitPolicy.listen_conn_id`): the one name both sides share.
NOTIFY_CHANNEL = "aps_extraction_finished"
_WORKFLOW = re.compile(r"^[A-Za-z0-9-]{1,36}$")
MAX_PAGES = 100


def verify_signature(raw_body: bytes, header_value: str, secret: str) -> bool:
    """True when `x-adsk-signature` (`sha1hash=<hex HMAC-SHA1 of the raw body>`) matches `secret`."""
    if not header_value or not secret:
        return False
    received = header_value.strip()
    if received.lower().startswith(SIGNATURE_PREFIX):
        received = received[len(SIGNATURE_PREFIX) :]
    expected = hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(expected.lower(), received.lower())


def check_workflow(workflow: str) -> str:
    if not _WORKFLOW.match(workflow):
        raise ValueError(f"workflow must be 1-36 letters, digits or hyphens, got {workflow!r}")
    return workflow


def region_headers(region: str) -> dict[str, str]:
    return {"x-ads-region": region.upper()}  # the header wins over the `region` query (aps-api.md §1)


def list_hooks_flow(region: str) -> Flow[list[dict[str, Any]]]:
    hooks: list[dict[str, Any]] = []
    params: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        response = yield RequestSpec(
            "GET", HOOKS_PATH, family="hooks_read", headers=region_headers(region), params=params or None
        )
        if response.status_code == 204 or not response.content:
            break  # no hooks at all
        body = response.json()
        hooks.extend(body.get("data") or [])
        next_link = (body.get("links") or {}).get("next")
        page_state = parse_qs(urlsplit(next_link).query).get("pageState") if next_link else None
        if not page_state:
            break
        params = {"pageState": page_state[0]}
    return hooks


def create_hook_flow(
    callback_url: str,
    workflow: str,
    region: str,
    secret: str | None,
    hook_attribute: dict[str, Any] | None,
) -> Flow[str]:
    body: dict[str, Any] = {"callbackUrl": callback_url, "scope": {"workflow": check_workflow(workflow)}}
    if hook_attribute:
        body["hookAttribute"] = hook_attribute
    response = yield RequestSpec(
        "POST",
        HOOKS_PATH,
        family="hooks_write",
        headers=region_headers(region),
        json=body,
        accept=frozenset({409}),
    )
    if response.status_code == 409:
        # The hook exists already, e.g. an earlier attempt of this POST created it but its answer was lost
        # and the transport retried: that hook is the one we want.
        hook_id = _find_hook((yield from list_hooks_flow(region)), callback_url, workflow)
        if hook_id is None:
            raise error_from_response(response)
    else:
        hook_id = _hook_id_from(response.headers.get("location"), response.content and response.json())
        if hook_id is None:
            # APS documents no body for 201; find our hook by its callback URL and workflow.
            hook_id = _find_hook((yield from list_hooks_flow(region)), callback_url, workflow)
        if hook_id is None:
            raise LookupError(f"hook for {callback_url!r} was created but APS does not list it")
    if secret:
        # A per-hook secret token is set by updating the hook (ModifyHookPayload.token).
        yield RequestSpec(
            "PATCH",
            f"{HOOKS_PATH}/{hook_id}",
            family="hooks_modify",
            headers=region_headers(region),
            json={"token": secret},
        )
    return hook_id


def _find_hook(hooks: list[dict[str, Any]], callback_url: str, workflow: str) -> str | None:
    """The id of the hook with this callback URL and workflow scope, if listed."""
    hook = _hook_of(hooks, callback_url, workflow)
    return str(hook["hookId"]) if hook else None


def _hook_id_from(location: str | None, body: Any) -> str | None:
    if isinstance(body, dict) and body.get("hookId"):
        return str(body["hookId"])
    if location:
        return location.rstrip("/").rsplit("/", 1)[-1]
    return None


def secret_fingerprint(secret: str) -> str:
    """A short tag of the hook secret, kept in the hook's hookAttribute so a later registration can tell
    that the secret changed without APS ever showing it. An HMAC under a fixed label: it reveals nothing."""
    return hmac.new(secret.encode("utf-8"), b"aps-pipeline hook secret", hashlib.sha256).hexdigest()[:16]


def ensure_hook_flow(callback_url: str, workflow: str, region: str, secret: str) -> Flow[str]:
    """Make sure one active hook sends this workflow's extraction.finished to `callback_url`, signed with
    `secret`; returns its id. Idempotent and cheap when nothing changed: one GET of the region's hooks.
    A hook APS deactivated (after failed deliveries) is reactivated; a changed secret is set again."""
    attribute = {"secretFingerprint": secret_fingerprint(secret)}
    hook = _hook_of((yield from list_hooks_flow(region)), callback_url, workflow)
    if hook is None:
        return (yield from create_hook_flow(callback_url, workflow, region, secret, attribute))
    changes: dict[str, Any] = {}
    if hook.get("status") not in ("active", "reactivated"):
        changes["status"] = "active"
    if (hook.get("hookAttribute") or {}).get("secretFingerprint") != attribute["secretFingerprint"]:
        changes.update(token=secret, hookAttribute=attribute)
    hook_id = str(hook["hookId"])
    if changes:
        yield RequestSpec("PATCH", f"{HOOKS_PATH}/{hook_id}", family="hooks_modify",
                          headers=region_headers(region), json=changes)
    return hook_id


def _hook_of(hooks: list[dict[str, Any]], callback_url: str, workflow: str) -> dict[str, Any] | None:
    for hook in hooks:
        if (hook.get("callbackUrl") == callback_url and (hook.get("scope") or {}).get("workflow") == workflow
                and hook.get("hookId")):
            return hook
    return None


def delete_hook_flow(hook_id: str, region: str) -> Flow[None]:
    yield RequestSpec(
        "DELETE", f"{HOOKS_PATH}/{hook_id}", family="hooks_modify", headers=region_headers(region)
    )


class WebhooksClient:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._region = transport.config.region

    def create_hook(
        self,
        callback_url: str,
        workflow: str,
        *,
        region: str | None = None,
        secret: str | None = None,
        hook_attribute: dict[str, Any] | None = None,
    ) -> str:
        """Subscribe `callback_url` to extraction.finished of jobs started with this `misc.workflow`.
        Returns the hook id; if that hook exists already (APS answers 409), the existing hook's id."""
        return self._transport.run(
            create_hook_flow(callback_url, workflow, region or self._region, secret, hook_attribute)
        )

    def ensure_hook(self, callback_url: str, workflow: str, secret: str, *, region: str | None = None) -> str:
        """`ensure_hook_flow`: one active hook for this callback URL and workflow, with this secret."""
        return self._transport.run(ensure_hook_flow(callback_url, workflow, region or self._region, secret))

    def list_hooks(self, region: str | None = None) -> list[dict[str, Any]]:
        return self._transport.run(list_hooks_flow(region or self._region))

    def delete_hook(self, hook_id: str, region: str | None = None) -> None:
        self._transport.run(delete_hook_flow(hook_id, region or self._region))


class AsyncWebhooksClient:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport
        self._region = transport.config.region

    async def create_hook(
        self,
        callback_url: str,
        workflow: str,
        *,
        region: str | None = None,
        secret: str | None = None,
        hook_attribute: dict[str, Any] | None = None,
    ) -> str:
        return await self._transport.run(
            create_hook_flow(callback_url, workflow, region or self._region, secret, hook_attribute)
        )

    async def list_hooks(self, region: str | None = None) -> list[dict[str, Any]]:
        return await self._transport.run(list_hooks_flow(region or self._region))

    async def delete_hook(self, hook_id: str, region: str | None = None) -> None:
        await self._transport.run(delete_hook_flow(hook_id, region or self._region))
