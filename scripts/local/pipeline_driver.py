#!/usr/bin/env python
"""Local pipeline driver: the same as `lakehouse run` (see `--help`)."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
