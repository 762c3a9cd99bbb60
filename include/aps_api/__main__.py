import sys

from aps_api.cli import main

sys.exit(main())
