"""Benchmarks: every performance claim is a ratio measured side by side in one run.

Run one with ``python -m bench.serving`` / ``bench.pipeline_overhead`` / ``bench.scale``,
or all of them with ``make bench`` (``python -m bench.run_all``). Each prints a table
and writes ``bench/results/<name>.json``. See docs/PERFORMANCE.md.
"""
