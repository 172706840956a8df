"""Holds only the floor's mitmproxy script ``floor.py`` (``bench_lib.procs.FLOOR_SCRIPT``).

mitmproxy puts the folder of every ``-s`` script on ``sys.path`` and leaves it there: in a folder
of its own, bench_lib's modules (``backend``, ``load``, ``settings``, ...) never become top-level
modules of that mitmdump.
"""
