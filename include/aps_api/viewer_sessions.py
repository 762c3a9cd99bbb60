"""Viewer sessions: the signed cookie the /viewer page gets for an API key, good for viewer tokens only.

The page never keeps the key: its sign-in page (which runs no third-party script) trades the key once for
this cookie, HttpOnly so no script on the page can read it, SameSite=Strict so other sites cannot use it.
The cookie carries the key's hash (never the key) and a timestamp, signed with itsdangerous; the server
checks the signature, the age and that the key is still active (so revoking a key ends its sessions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer

from aps_api.settings import APISettings

COOKIE_NAME = "aps_viewer_session"
_SALT = "aps-api viewer session v1"  # separates these signatures from any other use of the secret


@dataclass(frozen=True)
class ViewerSessions:
    lifetime_seconds: int
    _signer: URLSafeTimedSerializer = field(repr=False)

    @classmethod
    def from_settings(cls, settings: APISettings) -> ViewerSessions | None:
        """None when there is no secret to sign with (then there are no viewer tokens either)."""
        secret = (
            settings.viewer_session_secret.get_secret_value() or settings.aps_client_secret.get_secret_value()
        )
        if not secret:
            return None
        return cls(settings.viewer_session_seconds, URLSafeTimedSerializer(secret, salt=_SALT))

    def issue(self, key_hash: str) -> str:
        return self._signer.dumps({"key": key_hash})

    def key_hash(self, cookie: str | None) -> str | None:
        """The key hash a valid, unexpired session cookie carries; None for anything else."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.lifetime_seconds)
        except BadSignature:  # also SignatureExpired
            return None
        value = data.get("key") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None
