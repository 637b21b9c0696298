"""python -m mailaccess: the same as the `mailaccess` command."""
import sys

from .cli import main

sys.exit(main())
