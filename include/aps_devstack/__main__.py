"""`python -m aps_devstack`: the local stack's commands (demo, up, down, put, ...)."""

import sys

from aps_devstack.cli import main

sys.exit(main())
