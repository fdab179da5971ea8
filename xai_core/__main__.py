"""``python -m xai_core``: the ``xai-core`` command."""

from xai_core.cli import main

raise SystemExit(main())
