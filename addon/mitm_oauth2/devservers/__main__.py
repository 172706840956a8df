"""The command line: ``python -m mitm_oauth2.devservers``, described in the package docstring."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import warnings
from pathlib import Path

import jwt

from . import __doc__ as DESCRIPTION
from .clients import Client
from .clients import parse_clients
from .servers import DevServers
from .state import KNOBS

CLIENTS_HELP = """JSON object of clients: {"id": "secret"} or {"id": {"secret": "...",
"public_key_file": "PEM path" (private_key_jwt), "cert_cn": "subject CN" or "cert_sha256":
"hex" (tls_client_auth; "certificate_bound": "true" binds its tokens to the certificate),
"federated_issuer", "federated_subject", "federated_key": "PEM" and
optionally "federated_audience" (workload identity)}}. Default: the demo client."""


def _clients(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Client] | None:
    clients: dict[str, Client] | None = None
    try:
        if args.clients is not None:
            clients = parse_clients(json.loads(args.clients))
        if args.clients_file is not None:
            path = Path(args.clients_file)
            from_file = parse_clients(json.loads(path.read_text("utf-8")), path.parent)
            clients = {**(clients or {}), **from_file}
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        parser.error(f"clients: {e}")
    return clients


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mitm_oauth2.devservers",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="knobs (POST /_admin/config), with defaults:\n"
        + "\n".join(f"  {name} = {json.dumps(default)}" for name, (default, _) in KNOBS.items()),
    )
    parser.add_argument("--clients", metavar="JSON", help=CLIENTS_HELP)
    parser.add_argument(
        "--clients-file",
        metavar="PATH",
        help="the same JSON in a file (added to --clients); relative key paths from its folder",
    )
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve the backend over HTTPS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument(
        "--token-tls-cert", help="PEM certificate chain: serve the token server over HTTPS"
    )
    parser.add_argument("--token-tls-key", help="PEM private key for --token-tls-cert")
    parser.add_argument(
        "--token-client-ca",
        metavar="PEM",
        help="ask token clients for a certificate issued by this CA (tls_client_auth; "
        "needs --token-tls-cert); the metadata then has mtls_endpoint_aliases",
    )
    parser.add_argument(
        "--backend-client-ca",
        metavar="PEM",
        help="have the backend ask for a client certificate issued by this CA (certificate-bound "
        "tokens; needs --tls-cert)",
    )
    parser.add_argument("--token-port", type=int, default=0)
    parser.add_argument("--backend-port", type=int, default=0)
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if bool(args.token_tls_cert) != bool(args.token_tls_key):
        parser.error("--token-tls-cert and --token-tls-key go together")
    if args.token_client_ca and not args.token_tls_cert:
        parser.error("--token-client-ca needs --token-tls-cert and --token-tls-key")
    if args.backend_client_ca and not args.tls_cert:
        parser.error("--backend-client-ca needs --tls-cert and --tls-key")
    clients = _clients(parser, args)
    # client_secret_jwt with a short demo secret is fine here; keep stderr for real problems.
    warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        servers = DevServers(
            clients,
            args.tls_cert,
            args.tls_key,
            args.token_port,
            args.backend_port,
            token_tls_cert=args.token_tls_cert,
            token_tls_key=args.token_tls_key,
            token_client_ca=args.token_client_ca,
            backend_client_ca=args.backend_client_ca,
        )
        servers.start()
    except OSError as e:  # includes ssl.SSLError: unusable certificate or key, port in use
        print(f"devservers: cannot start: {e}", file=sys.stderr)
        return 1
    urls = {"token_url": servers.token_url, "backend_url": servers.backend_url}
    urls |= {"admin_url": servers.admin_url, "issuer": servers.issuer}
    print(json.dumps(urls), flush=True)
    while not stop.wait(1.0):
        pass
    servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
