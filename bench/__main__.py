"""`python -m gmchain.bench ...` = `gmchain bench ...` (same arguments; see bench.cli)."""

import sys

from gmchain.bench.cli import main

sys.exit(main(sys.argv[1:]))
