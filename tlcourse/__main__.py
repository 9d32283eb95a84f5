"""``python -m tlcourse ...`` runs the ``tlcourse`` command."""
import sys

from tlcourse.cli import main

sys.exit(main())
