"""The token request (client credentials, RFC 6749 §4.4, a JWT grant, RFC 7523, a token exchange,
RFC 8693, a refresh token, RFC 6749 §6, or a password, §4.3) over httpx. Knows nothing of
mitmproxy."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import math
import ssl
from datetime import UTC
from datetime import datetime
from typing import Any
from urllib.parse import quote
from urllib.parse import quote_plus
from urllib.parse import urlsplit

import httpx

from ..model.clock import Clock
from ..model.clock import SystemClock
from ..model.credentials import AuthMethod
from ..model.credentials import ClientCredentials
from ..model.credentials import GrantType
from ..model.credentials import SubjectToken
from ..model.credentials import TokenTransport
from ..model.errors import CallerTokenRefused
from ..model.errors import SignInRequired
from ..model.errors import TokenError
from ..model.net import printable
from ..model.token import TokenResponse
from .assertion import read_actor_token
from .assertion import read_assertion
from .auth import authenticate
from .discovery import Discovery
from .dpop import Nonces
from .dpop import proof
from .grant import grant
from .http import ACCEPT_ENCODING
from .http import read_limited

logger = logging.getLogger(__name__)


class _DebugOnly(logging.Filter):
    """httpx logs each request it sends at INFO ("HTTP Request: POST ..."): in the proxy's log
    that is noise beside our own line per token request, so it shows at debug verbosity only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


logging.getLogger("httpx").addFilter(_DebugOnly())


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# Put where a credential stood in a server's text: plainly a redaction, not a word of the text.
REDACTED = "[redacted]"


def _scrub(text: str, secrets: list[str]) -> str:
    """Server-supplied `text` without any credential in the forms a server may echo it in: as
    written, form- or percent-encoded, JSON-escaped, base64 or base64url. Only for what the
    server said: our own sentences name keys and never hold a credential."""
    for secret in secrets:
        raw = secret.encode()
        forms = {secret, quote_plus(secret, safe=""), quote(secret, safe="")}
        forms |= {json.dumps(secret)[1:-1], base64.b64encode(raw).decode()}
        forms |= {base64.urlsafe_b64encode(raw).decode().rstrip("=")}
        for form in sorted(forms, key=len, reverse=True):
            if form:
                text = text.replace(form, REDACTED)
    return text


def _parse_expires_in(value: Any) -> float | None:
    """`expires_in` as seconds; numeric strings are common (PayPal and others send "3600")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


class TokenClient:
    """Asks token endpoints for tokens; one connection pool per distinct token transport."""

    def __init__(
        self, *, transport: httpx.AsyncBaseTransport | None = None, clock: Clock | None = None
    ) -> None:
        self._transport = transport  # tests inject a mock; production uses httpx's own
        self._clock = clock or SystemClock()
        self._pools: dict[TokenTransport, httpx.AsyncClient] = {}
        self._discovery = Discovery(self._clock)
        self._nonces = Nonces()  # RFC 9449 §8: the token endpoints' DPoP nonces

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    async def token_endpoint(self, credentials: ClientCredentials) -> str:
        """The token endpoint: `token_url`, or the one the issuer's metadata names."""
        return (await self._endpoint(credentials))[1]

    async def _endpoint(self, credentials: ClientCredentials) -> tuple[httpx.AsyncClient, str]:
        try:
            http = self._pool(credentials.transport)
        except (ssl.SSLError, OSError) as e:
            raise TokenError(f"cannot set up TLS for the token call ({type(e).__name__})") from e
        endpoint = credentials.token_url
        if endpoint is None:
            assert credentials.issuer is not None  # config requires one of the two
            mtls = credentials.auth_method.uses_certificate
            endpoint = await self._discovery.token_endpoint(http, credentials.issuer, mtls=mtls)
        return http, endpoint

    async def request_token(
        self,
        credentials: ClientCredentials,
        subject: SubjectToken | None = None,
        refresh_token: str | None = None,
    ) -> TokenResponse:
        """`subject`: token_exchange's caller token (see tokens.subjects); `refresh_token`: the
        user's, asked with instead of the configured grant (see tokens.broker)."""
        http, endpoint = await self._endpoint(credentials)
        for attempt in (1, 2):
            # Everything made again for a retry: assertions and proofs are used once.
            now = self._clock.wall()
            assertion = actor = None
            # Read again each time: the platform rotates them. A thread: a file system may stall.
            if credentials.assertion_file is not None:
                assertion = await asyncio.to_thread(read_assertion, credentials.assertion_file, now)
            exchange = credentials.exchange
            if exchange is not None and exchange.actor_token_file is not None:
                actor = await asyncio.to_thread(read_actor_token, exchange.actor_token_file)
            asked = grant(credentials, endpoint, now, subject, actor, refresh_token)
            auth = authenticate(credentials, endpoint, now, assertion)
            form = {**asked.form, **auth.form}
            headers = {**dict(credentials.token_headers), "Accept": "application/json"}
            headers |= auth.headers
            secrets = [*asked.secrets, *auth.secrets]
            if credentials.dpop is not None:
                nonce = self._nonces.get(endpoint)
                headers["DPoP"] = proof(credentials.dpop, "POST", endpoint, now, nonce=nonce)
                secrets.append(headers["DPoP"])
            status, body, retry_after, nonce = await self._post(
                http, endpoint, form, headers, credentials.transport.timeout
            )
            if nonce is None or credentials.dpop is None:
                break
            self._nonces.keep(endpoint, nonce)
            # RFC 9449 §8: a server that wants a nonce says so, and is asked again once.
            if attempt == 2 or _error_code(body) != "use_dpop_nonce":
                break
        try:
            return self._parse(status, body, secrets, endpoint, credentials, refresh_token)
        except TokenError as e:
            e.retry_after = retry_after
            raise

    def _pool(self, transport: TokenTransport) -> httpx.AsyncClient:
        pool = self._pools.get(transport)
        if pool is None:
            context = (
                ssl.create_default_context(cafile=transport.ca_bundle)
                if transport.ca_bundle
                else httpx.create_ssl_context()  # httpx's default trust store (certifi)
            )
            if transport.client_cert is not None:
                identity = transport.client_cert
                context.load_cert_chain(identity.cert_file, identity.key_file)
            # trust_env=False: the proxy's own environment often has HTTP(S)_PROXY pointing at
            # the proxy itself, and a token call must never loop through it.
            pool = httpx.AsyncClient(
                timeout=transport.timeout,
                verify=context,
                proxy=transport.proxy,
                transport=self._transport,
                trust_env=False,
                follow_redirects=False,
                headers=ACCEPT_ENCODING,
            )
            self._pools[transport] = pool
        return pool

    async def _post(
        self,
        http: httpx.AsyncClient,
        url: str,
        form: dict[str, str | list[str]],
        headers: dict[str, str],
        limit: float,
    ) -> tuple[int, bytes, float | None, str | None]:
        """Posts the form: status, body, Retry-After and DPoP-Nonce. `limit` is the pool's
        timeout, named in the error."""
        try:
            async with http.stream("POST", url, data=form, headers=headers) as response:
                body = await read_limited(response, "token endpoint")
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                nonce = response.headers.get("DPoP-Nonce")
                return response.status_code, body, retry_after, nonce
        except httpx.TimeoutException as e:
            raise TokenError(f"token endpoint timed out after {limit:g} s") from e
        except httpx.ConnectError as e:
            raise TokenError(f"cannot connect to token endpoint ({printable(str(e), 120)})") from e
        except httpx.RemoteProtocolError as e:
            raise TokenError("token endpoint closed the connection without an answer") from e
        except (httpx.ReadError, httpx.WriteError) as e:  # e.g. reset by the server or a firewall
            reason = printable(str(e) or type(e).__name__, 120)
            raise TokenError(f"connection to token endpoint broke ({reason})") from e
        except httpx.HTTPError as e:
            raise TokenError(f"token request failed ({type(e).__name__})") from e
        except UnicodeEncodeError as e:
            raise TokenError("a token request header or parameter is not ASCII") from e

    @staticmethod
    def _parse(
        status: int,
        body: bytes,
        secrets: list[str],
        endpoint: str,
        credentials: ClientCredentials,
        refresh_token: str | None,
    ) -> TokenResponse:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            if 200 <= status < 300:
                raise TokenError("token endpoint answered without a JSON object", status=status)
            raise _http_error(status, endpoint, credentials)
        error = document.get("error")
        if error is not None or not 200 <= status < 300:
            if not isinstance(error, str):
                raise _http_error(status, endpoint, credentials)
            description = document.get("error_description")
            raise TokenClient._oauth_error(
                status, error, description, secrets, endpoint, credentials, refresh_token
            )
        access_token = document.get("access_token")
        if not isinstance(access_token, str) or not access_token.strip():
            raise TokenError("token response has no access_token", status=status)
        if not (access_token.isascii() and access_token.isprintable()) or " " in access_token:
            # It goes into a header: a line break there would let the server inject headers.
            raise TokenError("token endpoint issued an access_token a header cannot carry")
        token_type = document.get("token_type")
        wanted = "DPoP" if credentials.dpop is not None else "Bearer"
        if token_type == "N_A" and credentials.grant is GrantType.TOKEN_EXCHANGE:
            # RFC 8693 §2.2.1: what it issued is no access token (requested_token_type, say a
            # JWT), so it has no token type of its own; it goes on as the header_format says.
            token_type = wanted
        if token_type is None and wanted == "Bearer":
            logger.warning("%s: token response has no token_type; taken as Bearer", endpoint)
            token_type = "Bearer"
        if not isinstance(token_type, str) or token_type.lower() != wanted.lower():
            kind = printable(str(token_type), 40)
            # RFC 6749 §7.1: a client must not use a token type it does not understand; and a
            # Bearer token where DPoP was asked for is not bound to the key (RFC 9449 §5).
            why = " (is DPoP enabled for this client at the server?)" if wanted == "DPoP" else ""
            raise TokenError(
                f"token endpoint issued token_type '{kind}', not {wanted}{why}", status=status
            )
        scope = document.get("scope")
        expires_in = _parse_expires_in(document.get("expires_in"))
        if expires_in is None and document.get("expires_in") is not None:
            # Used as if absent (max_token_age); the operator should know the server is odd.
            shown = printable(json.dumps(document["expires_in"]), 40)
            logger.warning("%s: expires_in %s is not a number; taken as absent", endpoint, shown)
        return TokenResponse(
            access_token=access_token,
            token_type=wanted,
            expires_in=expires_in,
            scope=scope if isinstance(scope, str) else None,
            refresh_token=_refresh_token(document.get("refresh_token"), endpoint, credentials),
        )

    @staticmethod
    def _oauth_error(
        status: int,
        error: str,
        description: Any,
        secrets: list[str],
        endpoint: str,
        credentials: ClientCredentials,
        refresh_token: str | None,
    ) -> TokenError:
        # Some servers echo what they were sent; never let that carry the secret anywhere.
        code = printable(_scrub(error, secrets), 64)
        described = None
        if isinstance(description, str) and description:
            described = printable(_scrub(description, secrets), 200)
        kind: type[TokenError] = TokenError
        if refresh_token is not None and code == "invalid_grant":
            kind, advice = SignInRequired, _SIGN_IN_AGAIN
        else:
            advice = _advice(status, code, endpoint, credentials)
            if credentials.grant is GrantType.TOKEN_EXCHANGE and code in _CALLER_REFUSALS:
                kind = CallerTokenRefused
        return kind(
            f"token endpoint answered HTTP {status} with error '{code}'"
            + (f" ({advice})" if advice else ""),
            oauth_error=code,
            status=status,
            description=described,
        )


# What to check for the RFC 6749 §5.2 (and RFC 8707 §2) error codes a configuration can cause.
_ADVICE = {
    "invalid_scope": "check scope",
    "invalid_target": "check resource and audience",
    "unauthorized_client": "the server does not let this client use the {grant} grant",
    "unsupported_grant_type": "the server does not offer the {grant} grant",
}
# jwt_bearer: the grant itself is the assertion, so a refused grant is about its keys.
_BEARER_ADVICE = (
    "check the assertion: the key the server has for its issuer (private_key_file and key_id, or "
    "service_account_file), assertion_issuer, assertion_subject and assertion_audience"
)
_GRANT_NAMES = {
    GrantType.CLIENT_CREDENTIALS: "client-credentials",
    GrantType.JWT_BEARER: "JWT-bearer",
    GrantType.TOKEN_EXCHANGE: "token-exchange",
    GrantType.REFRESH_TOKEN: "refresh-token",
    GrantType.PASSWORD: "password",
}
# A refresh token refused (RFC 6749 §5.2 invalid_grant) is revoked, expired, or was presented
# again after rotation (RFC 9700 §4.14.2): only a new sign-in gives another.
_SIGN_IN_AGAIN = (
    "the refresh token was refused: revoked, expired or used twice; a person must sign in "
    "again and give the proxy the new refresh token"
)
# token_exchange: the server will not take the caller's token (RFC 8693 §2.2.2), or not for
# this audience or resource: the caller's matter, not the configuration's.
_CALLER_REFUSALS = {
    "invalid_grant": "the server refused the caller's token",
    "invalid_target": "the server will not exchange the caller's token for this audience or "
    "resource",
}
# The keys that prove the client's identity, by authentication method.
_CLIENT_PROOF = {
    AuthMethod.CLIENT_SECRET_BASIC: "the client secret",
    AuthMethod.CLIENT_SECRET_POST: "the client secret",
    AuthMethod.CLIENT_SECRET_JWT: "the client secret",
    AuthMethod.PRIVATE_KEY_JWT: "private_key_file (and key_id) registered for it",
    AuthMethod.TLS_CLIENT_AUTH: "client_cert_file registered for it",
    AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH: "client_cert_file registered for it (or its JWKS)",
    AuthMethod.CLIENT_ASSERTION: "that the server trusts the issuer of client_assertion_file",
    AuthMethod.NONE: "whether the server wants the client to authenticate (auth_method)",
}


def _advice(status: int, code: str | None, endpoint: str, credentials: ClientCredentials) -> str:
    """What to check after a refusal: by the status where it tells (a wrong URL), else by the
    OAuth error code; the URL asked (scheme, host and path) when nothing else does."""
    parts = urlsplit(endpoint)
    url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if status in (404, 405) or 300 <= status < 400:
        return f"{url}: check {'token_url' if credentials.token_url else 'issuer'}"
    if code == "invalid_client" or (code is None and status == 401):
        return f"check client_id and {_CLIENT_PROOF[credentials.auth_method]}"
    if code is None:
        return url
    if code == "invalid_grant" and credentials.grant is GrantType.JWT_BEARER:
        return _BEARER_ADVICE
    if code == "invalid_grant" and credentials.grant is GrantType.PASSWORD:
        return "check username and the password"
    if code in _CALLER_REFUSALS and credentials.grant is GrantType.TOKEN_EXCHANGE:
        return _CALLER_REFUSALS[code]
    return _ADVICE.get(code, "").format(grant=_GRANT_NAMES[credentials.grant])


def _refresh_token(value: Any, endpoint: str, credentials: ClientCredentials) -> str | None:
    """The rotated refresh token, when the server sent one this grant can use."""
    if value is None or credentials.user is None:
        return None  # no grant of a user keeps one (RFC 6749 §4.4.3: none for a client)
    if not isinstance(value, str) or not value.strip() or not value.isascii():
        # Kept out: the current one is used again, and the server says whether it still holds.
        logger.warning(
            "%s: the refresh_token in the token response is not a string; ignored", endpoint
        )
        return None
    return value


def _http_error(status: int, endpoint: str, credentials: ClientCredentials) -> TokenError:
    """An answer without an OAuth error code."""
    advice = _advice(status, None, endpoint, credentials)
    return TokenError(f"token endpoint answered HTTP {status} ({advice})", status=status)


def _error_code(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, str) else None
