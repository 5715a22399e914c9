"""``python -m pgflow``: the ``pgflow`` command."""

import sys

from .cli import main

sys.exit(main())
