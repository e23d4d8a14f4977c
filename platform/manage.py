#!/usr/bin/env python
"""Django's command-line utility; `twinops` is the same with extra commands."""

from twinops.cli import main

if __name__ == "__main__":
    main()
