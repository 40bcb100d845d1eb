"""``python -m ember`` runs the command line."""

import sys

from ember.cli import main

if __name__ == "__main__":
    sys.exit(main())
