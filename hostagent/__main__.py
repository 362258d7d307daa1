"""``python -m hostagent``: run the host agent (``--help`` lists the options)."""

from __future__ import annotations

import sys

from hostagent.main import main

if __name__ == "__main__":
    sys.exit(main())
