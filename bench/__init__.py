"""The benchmark of issue 10: `./dev bench [--quick]` (see `bench/run.py` and the README)."""
