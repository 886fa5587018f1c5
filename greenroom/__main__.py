"""`python -m greenroom …`, the same as the `greenroom` command."""

import sys

from greenroom.cli import main

sys.exit(main())
