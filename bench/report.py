#!/usr/bin/env python3
"""Runs the report package next to this file (bench/report/): `python3 bench/report.py --help`.
Kept so the command works from any directory without setting PYTHONPATH."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report.__main__ import main  # noqa: E402  (the package is found through the path above)

sys.exit(main())
