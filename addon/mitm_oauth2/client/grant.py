"""What a token request asks with: the client-credentials grant (RFC 6749 §4.4) or a JWT as
the authorization grant (RFC 7523 §2.1), e.g. a Google service account's or Salesforce's and
Okta's service-app flows, whose assertion is signed here for each request."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

from ..model.credentials import AssertionAudience
from ..model.credentials import BearerAssertion
from ..model.credentials import ClientCredentials
from ..model.credentials import GrantType
from .auth import assertion_claims
from .auth import signed


@dataclass(frozen=True)
class Grant:
    """The form fields that say what is asked for, and any credential among them."""

    form: dict[str, str | list[str]] = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)


def grant(credentials: ClientCredentials, token_endpoint: str, now: float) -> Grant:
    form: dict[str, str | list[str]] = {"grant_type": credentials.grant.parameter}
    bearer = credentials.bearer
    in_claims = bearer is not None and bearer.scope_claim
    if credentials.scope and not in_claims:
        form["scope"] = credentials.scope
    if credentials.audience:
        form["audience"] = credentials.audience
    if credentials.resources:
        form["resource"] = list(credentials.resources)  # RFC 8707: repeated parameter
    form.update(credentials.extra_params)
    if credentials.grant is not GrantType.JWT_BEARER:
        return Grant(form)
    assert bearer is not None  # config requires it for jwt_bearer
    assertion = bearer_assertion(bearer, credentials, token_endpoint, now)
    form["assertion"] = assertion
    return Grant(form, (assertion,))


def bearer_assertion(
    bearer: BearerAssertion, credentials: ClientCredentials, token_endpoint: str, now: float
) -> str:
    """RFC 7523 §3: iss, sub (when there is one: Google's service accounts act as themselves
    without it), aud, iat, exp, a fresh jti; the scope too where the server wants it there."""
    if bearer.audience == AssertionAudience.ISSUER:
        audience = credentials.issuer
    elif bearer.audience is None or bearer.audience == AssertionAudience.TOKEN_ENDPOINT:
        audience = token_endpoint
    else:
        audience = bearer.audience
    claims = assertion_claims(bearer.issuer, bearer.subject, audience, now, bearer.lifetime)
    if bearer.scope_claim and credentials.scope:
        claims["scope"] = credentials.scope
    return signed(claims, bearer.key)
