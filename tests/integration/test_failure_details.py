"""What a caller and an operator read when no token can be had, through the real mitmdump: the
URL that was asked and the key to check, the server's own words with a credential plainly
redacted, and no line of httpx's own at the default verbosity."""

from __future__ import annotations

import pytest

from tests.support.devservers import DevServersProcess
from tests.support.proxies import ProxyFactory


def test_wrong_token_url_names_the_url_and_the_key(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    wrong = devservers.token_url.replace("/token", "/oauth/token")
    proxy = mitmdump(devservers.backend_toml(token_url=wrong + "?tenant=a"))
    with proxy.client() as client:
        answer = client.get(f"{devservers.backend_url}/things")
    assert answer.status_code == 502
    detail = answer.json()["detail"]
    assert (
        f"token endpoint answered HTTP 404 with error 'not_found' ({wrong}: check token_url)"
        in (detail)
    )
    proxy.wait_for_output(rf"backend \S+: no token: .*HTTP 404 .*\({wrong}: check token_url\)")
    assert "HTTP Request:" not in proxy.output()  # httpx's own line, at debug verbosity only


@pytest.mark.parametrize(
    ("secret", "described"),
    [
        ("secret", "unknown client or wrong [redacted]"),
        ("wrong", "unknown client or [redacted] secret"),
    ],
)
def test_invalid_client_says_to_check_id_and_secret_and_redacts_plainly(
    devservers: DevServersProcess, mitmdump: ProxyFactory, secret: str, described: str
) -> None:
    proxy = mitmdump(devservers.backend_toml(client_secret=secret))
    with proxy.client() as client:
        answer = client.get(f"{devservers.backend_url}/things")
    assert answer.status_code == 502
    cause = "error 'invalid_client' (check client_id and the client secret)"
    assert cause in answer.json()["detail"]  # our sentence, never scrubbed
    line = proxy.wait_for_output(r"backend \S+: no token: .*").group(0)
    assert cause in line
    assert described in line  # the server's words, with the credential redacted
