"""Entry point: `python -m plantsim serve|export|spec ...`."""

from plantsim.cli import main

raise SystemExit(main())
