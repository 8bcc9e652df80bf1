"""`python -m clipforge` is the `clipforge` command."""

import sys

from .cli.main import main

sys.exit(main())
