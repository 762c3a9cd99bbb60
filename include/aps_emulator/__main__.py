from aps_emulator.cli import main

main()
