"""`aps-emulator --host H --port P` (also `python -m aps_emulator`): serve the emulator with uvicorn."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from aps_emulator.app import create_app
from aps_emulator.settings import EmulatorSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aps-emulator", description="Local emulator of the APS REST APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = EmulatorSettings()
    # One process, one event loop: state lives in this process (see state.py).
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                access_log=args.access_log, workers=1)


if __name__ == "__main__":
    main()
