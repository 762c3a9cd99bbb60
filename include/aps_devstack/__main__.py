import sys

from aps_devstack.cli import main

sys.exit(main())
