"""`python -m twinops` is the `twinops` command."""

from twinops.cli import main

main()
