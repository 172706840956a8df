"""Holds only the mitmproxy script ``oauth2_backend.py`` (``mitm_oauth2.testing.ADDON_SCRIPT``).

mitmproxy puts the folder of every ``-s`` script on ``sys.path`` and leaves it there. The script
lives in a folder of its own so that this package's modules (``config``, ``store``, ...) never
become top-level modules that shadow another script's or library's imports.
"""
