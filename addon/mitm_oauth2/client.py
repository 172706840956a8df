"""The client-credentials token request (RFC 6749 §4.4) over httpx. Knows nothing of mitmproxy."""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import math
from datetime import UTC
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

import httpx

from .credentials import AuthMethod
from .credentials import ClientCredentials
from .tokens import TokenError
from .tokens import TokenResponse

logger = logging.getLogger(__name__)

# A token response is a few KiB at most; a larger body is a misbehaving server, never read whole.
MAX_RESPONSE_BYTES = 1 << 20
DEFAULT_TIMEOUT = 10.0


def basic_credentials(client_id: str, client_secret: str) -> str:
    """The `Authorization` value for client_secret_basic, encoded as RFC 6749 §2.3.1 requires.

    Each part is form-urlencoded before joining, so a ':' '%' '+' '&' or space in a secret survives
    (the seed recipe's plain base64 of `id:secret` breaks on those).
    """
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _printable(text: str, limit: int) -> str:
    """Server-supplied text made safe for one log line or problem field."""
    cleaned = "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text)
    return cleaned[:limit]


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


def _scrub(text: str, secret: str) -> str:
    """`text` without the secret, as written or form-urlencoded."""
    for form in (secret, quote_plus(secret, safe="")):
        text = text.replace(form, "***")
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
    """Asks token endpoints for tokens; one shared connection pool for all backends."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        # trust_env=False: the proxy's own environment often has HTTP(S)_PROXY pointing at the
        # proxy itself, and a token call must never loop through it.
        self._http = httpx.AsyncClient(
            timeout=timeout, transport=transport, trust_env=False, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request_token(self, credentials: ClientCredentials) -> TokenResponse:
        form = {"grant_type": "client_credentials"}
        if credentials.scope:
            form["scope"] = credentials.scope
        headers = {"Accept": "application/json"}
        secret = credentials.client_secret.reveal()
        # Exactly one client authentication method per request (RFC 6749 §2.3).
        if credentials.auth_method is AuthMethod.CLIENT_SECRET_BASIC:
            headers["Authorization"] = basic_credentials(credentials.client_id, secret)
        else:
            form["client_id"] = credentials.client_id
            form["client_secret"] = secret
        status, body, retry_after = await self._post(credentials.token_url, form, headers)
        try:
            return self._parse(status, body, secret)
        except TokenError as e:
            e.retry_after = retry_after
            raise

    async def _post(
        self, url: str, form: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, bytes, float | None]:
        try:
            async with self._http.stream("POST", url, data=form, headers=headers) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise TokenError(
                            f"token endpoint sent more than {MAX_RESPONSE_BYTES} bytes",
                            status=response.status_code,
                        )
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                return response.status_code, bytes(body), retry_after
        except httpx.TimeoutException as e:
            raise TokenError(f"token endpoint timed out after {self._timeout:g} s") from e
        except httpx.ConnectError as e:
            raise TokenError(f"cannot connect to token endpoint ({_printable(str(e), 120)})") from e
        except httpx.RemoteProtocolError as e:
            raise TokenError("token endpoint closed the connection without an answer") from e
        except httpx.HTTPError as e:
            raise TokenError(f"token request failed ({type(e).__name__})") from e

    @staticmethod
    def _parse(status: int, body: bytes, secret: str) -> TokenResponse:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            if 200 <= status < 300:
                raise TokenError("token endpoint answered without a JSON object", status=status)
            raise TokenError(f"token endpoint answered HTTP {status}", status=status)
        error = document.get("error")
        if error is not None or not 200 <= status < 300:
            raise TokenClient._oauth_error(status, error, document.get("error_description"), secret)
        access_token = document.get("access_token")
        if not isinstance(access_token, str) or not access_token.strip():
            raise TokenError("token response has no access_token", status=status)
        token_type = document.get("token_type")
        if token_type is None:
            logger.warning("token response has no token_type; treating the token as Bearer")
            token_type = "Bearer"
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            kind = _printable(str(token_type), 40)
            # RFC 6749 §7.1: a client must not use a token type it does not understand.
            raise TokenError(
                f"token endpoint issued token_type '{kind}', not Bearer", status=status
            )
        scope = document.get("scope")
        return TokenResponse(
            access_token=access_token,
            token_type="Bearer",
            expires_in=_parse_expires_in(document.get("expires_in")),
            scope=scope if isinstance(scope, str) else None,
        )

    @staticmethod
    def _oauth_error(status: int, error: Any, description: Any, secret: str) -> TokenError:
        if not isinstance(error, str):
            return TokenError(f"token endpoint answered HTTP {status}", status=status)
        # Some servers echo what they were sent; never let that carry the secret anywhere.
        code = _printable(_scrub(error, secret), 64)
        described = None
        if isinstance(description, str) and description:
            described = _printable(_scrub(description, secret), 200)
        return TokenError(
            f"token endpoint answered HTTP {status} with error '{code}'",
            oauth_error=code,
            status=status,
            description=described,
        )
