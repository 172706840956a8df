"""``scripts/bench``: the addon against bare mitmproxy, every figure a ratio or count against a
baseline measured in the same run (issue 7). ``python -m bench_lib --help`` says how to run it."""
