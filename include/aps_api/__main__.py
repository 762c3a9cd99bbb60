"""`python -m aps_api`: the same as the `aps-api` command."""

import sys

from aps_api.cli import main

sys.exit(main())
