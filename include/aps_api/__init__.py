"""Read-only HTTP API over the pipeline's results, handing out short-lived APS viewer tokens.

Start it with `aps-api --host H --port P`; settings come from `APS_API_*` environment variables
(see `aps_api.settings.APISettings`). Build the ASGI app in code with `aps_api.app.create_app(settings)`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aps-pipeline")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
