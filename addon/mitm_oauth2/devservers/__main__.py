"""The command line: ``python -m mitm_oauth2.devservers``, described in the package docstring."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from . import __doc__ as DESCRIPTION
from .servers import DevServers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mitm_oauth2.devservers", description=DESCRIPTION
    )
    parser.add_argument("--clients", help='JSON object {"client_id": "secret", ...}')
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve the backend over HTTPS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--token-port", type=int, default=0)
    parser.add_argument("--backend-port", type=int, default=0)
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        clients = None if args.clients is None else json.loads(args.clients)
    except ValueError as e:
        parser.error(f"--clients: {e}")
    if clients is not None and not (
        isinstance(clients, dict) and all(isinstance(v, str) for v in clients.values())
    ):
        parser.error("--clients must be a JSON object of strings")

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        servers = DevServers(
            clients, args.tls_cert, args.tls_key, args.token_port, args.backend_port
        )
        servers.start()
    except OSError as e:  # includes ssl.SSLError: unusable certificate or key, port in use
        print(f"devservers: cannot start: {e}", file=sys.stderr)
        return 1
    urls = {"token_url": servers.token_url, "backend_url": servers.backend_url}
    print(json.dumps({**urls, "admin_url": servers.admin_url}), flush=True)
    while not stop.wait(1.0):
        pass
    servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
