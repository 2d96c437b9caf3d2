"""`python -m cli`: the `styledrop` command, for subprocesses started with this interpreter."""

import sys

from cli.main import main

sys.exit(main())
