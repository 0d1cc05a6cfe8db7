"""``python -m batch_embed`` runs the ``batch-embed`` command."""

from .entry import main

raise SystemExit(main())
