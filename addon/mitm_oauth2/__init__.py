"""Call OAuth2-protected backends through mitmproxy: tokens are fetched, cached and injected.

The layers, each importing only those below it (the contracts in pyproject.toml):

- this package's own modules: the mitmproxy glue (the addon and its hooks, commands, metrics,
  replay, challenges, redaction, learning, the flow's story, problem responses), which wires
  the layers below together;
- `config`: the TOML file, its backends and hosts, and the watcher that reloads it;
- `tokens`: the broker and its renewal policy (no mitmproxy, no I/O library);
- `client` (token requests over httpx) and `store` (disk, Redis, memory), independent of
  each other;
- `model`: the values all of them pass around (credentials, tokens, errors, the clock).
"""

__version__ = "0.1.0"
