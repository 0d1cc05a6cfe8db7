"""``python -m batch_embed`` runs the ``batch-embed`` command."""

from .cli import main

raise SystemExit(main())
