"""What the test suites share (imported as ``tests.support``; tests/conftest.py loads `fixtures`):

  fixtures       the shared fixtures and report hooks: dev servers, mitmdump, Redis, HTTP/2
  proxies        mitmdump through the shipped ProxyProcess: the one launcher (`launch`,
                 `ProxyFactory`, `run_to_exit`)
  procs          `Child`, the one helper for every other child process; the children's
                 environment, curl, bounded polling
  devservers     python -m mitm_oauth2.devservers as a child, TLS files, TOML helpers
  mitmweb        mitmweb (a ProxyProcess too) and a client for its API
  redis_server   a real Redis server; h2_backend (+ h2_app) hypercorn with HTTP/2
  key_material   keys and client certificates; config_helpers: config tables for unit tests
  programs       which Redis server and Node.js to start (scripts/bench's rule too)

Free ports come from the shipped ``mitm_oauth2.testing.free_port``.
"""
