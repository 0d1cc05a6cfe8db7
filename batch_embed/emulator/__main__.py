"""``python -m batch_embed.emulator``: see :mod:`batch_embed.emulator.cli`."""

import sys

from .cli import main

sys.exit(main())
