"""``python -m xai_core.demo``: train the shapes model, explain it with every method, write the PNG."""

from xai_core.demo import main

raise SystemExit(main())
