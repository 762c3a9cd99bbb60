"""`python -m aps_emulator`: run the APS emulator (see cli.py for its options)."""

from aps_emulator.cli import main

main()
