"""aps_client: a small client for Autodesk Platform Services (APS), sync and async, on httpx. No Airflow.

Point it at real APS:

    from pydantic import SecretStr
    from aps_client import APSClient, APSConfig
    cfg = APSConfig(client_id="<your APS app's client id>", client_secret=SecretStr("<its secret>"),
                    region="US")        # or EMEA, AUS, ...; base_url defaults to https://developer.api.autodesk.com
    # or: APSConfig.from_env()  reads APS_CLIENT_ID, APS_CLIENT_SECRET, APS_REGION, APS_BASE_URL, APS_SCOPES

Point it at the local emulator (`aps-emulator --host 127.0.0.1 --port 8765`, default client
emulator-client / emulator-secret, or whatever APS_EMULATOR_CLIENTS says) by changing only the base URL:

    cfg = APSConfig(client_id="emulator-client", client_secret=SecretStr("emulator-secret"),
                    base_url="http://127.0.0.1:8765")

Then:

    with APSClient(cfg) as aps:
        aps.oss.ensure_bucket("my-bucket")
        with open("house.ifc", "rb") as f:
            obj = aps.oss.upload("my-bucket", "house.ifc", f, size=os.path.getsize("house.ifc"))
        urn = to_urn(obj.object_id)
        aps.derivative.start_job(urn)
        aps.derivative.manifest(urn).status   # poll until .is_finished

Every call goes through one request policy (aps_client.transport): process-wide token cache, retries on
429 (Retry-After) / 408 / 5xx, token refresh on 401, client-side rate limits per endpoint family.
"""

from aps_client.auth import clear_token_cache
from aps_client.client import APSClient, AsyncAPSClient
from aps_client.config import APSConfig
from aps_client.models import (
    Bucket,
    Derivative,
    JobAccepted,
    Manifest,
    ManifestMessage,
    ModelView,
    ObjectDetails,
    ObjectProperties,
    Token,
    TreeEntry,
    TreeNode,
    UploadState,
)
from aps_client.urn import from_urn, to_urn
from aps_client.webhooks import verify_signature

__all__ = [
    "APSClient",
    "APSConfig",
    "AsyncAPSClient",
    "Bucket",
    "Derivative",
    "JobAccepted",
    "Manifest",
    "ManifestMessage",
    "ModelView",
    "ObjectDetails",
    "ObjectProperties",
    "Token",
    "TreeEntry",
    "TreeNode",
    "UploadState",
    "clear_token_cache",
    "from_urn",
    "to_urn",
    "verify_signature",
]
