#!/usr/bin/env python3
"""Entry point for CI and direct use: ``python3 run_pipeline.py --help``."""
from pipeline.cli import main

if __name__ == "__main__":
    main()
