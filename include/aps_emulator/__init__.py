"""A local emulator of the Autodesk Platform Services REST APIs the pipeline uses (aps-api.md).

Start it with `aps-emulator --host H --port P` or embed it with `create_app(EmulatorSettings(...))`.
Written from the API contract alone (it does not import aps_client) so each catches the other's mistakes.
"""

from aps_emulator.app import create_app
from aps_emulator.settings import EmulatorSettings, Tunables

__all__ = ["EmulatorSettings", "Tunables", "create_app"]
