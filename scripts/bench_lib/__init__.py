"""``scripts/bench``: the addon against bare mitmproxy and against a one-hook script addon (the
floor), every figure a ratio or count against a baseline measured in the same run.
``python -m bench_lib --help`` says how to run it."""
