"""``python -m middleware`` runs the same CLI as the ``silobridge`` console script."""

import sys

from middleware.cli import main

sys.exit(main())
