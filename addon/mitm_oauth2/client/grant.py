"""What a token request asks with: the client-credentials grant (RFC 6749 §4.4), a JWT as the
authorization grant (RFC 7523 §2.1), e.g. a Google service account's or Salesforce's and Okta's
service-app flows, whose assertion is signed here for each request, the caller's own token
exchanged for one of this backend (RFC 8693 §2.1), or a user's refresh token (RFC 6749 §6) or
username and password (RFC 6749 §4.3)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

from ..model.credentials import AssertionAudience
from ..model.credentials import BearerAssertion
from ..model.credentials import ClientCredentials
from ..model.credentials import GrantType
from ..model.credentials import SubjectToken
from .auth import assertion_claims
from .auth import signed


@dataclass(frozen=True)
class Grant:
    """The form fields that say what is asked for, and any credential among them."""

    form: dict[str, str | list[str]] = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)


def grant(
    credentials: ClientCredentials,
    token_endpoint: str,
    now: float,
    subject: SubjectToken | None = None,
    actor_token: str | None = None,
    refresh_token: str | None = None,
) -> Grant:
    """`subject`: token_exchange's caller token; `actor_token`: its actor's, as read from its
    file for this request; `refresh_token`: the user's current one (refresh_token, and password
    once the server gave one), which is then what is asked with."""
    kind = GrantType.REFRESH_TOKEN if refresh_token is not None else credentials.grant
    form: dict[str, str | list[str]] = {"grant_type": kind.parameter}
    bearer = credentials.bearer
    in_claims = bearer is not None and bearer.scope_claim
    if credentials.scope and not in_claims:
        form["scope"] = credentials.scope
    if credentials.audience:
        form["audience"] = credentials.audience
    if credentials.resources:
        form["resource"] = list(credentials.resources)  # RFC 8707: repeated parameter
    form.update(credentials.extra_params)
    if refresh_token is not None:
        form["refresh_token"] = refresh_token
        return Grant(form, (refresh_token,))
    if credentials.grant is GrantType.PASSWORD:
        return password(form, credentials)
    if credentials.grant is GrantType.TOKEN_EXCHANGE:
        return exchange(form, credentials, subject, actor_token)
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


def password(form: dict[str, str | list[str]], credentials: ClientCredentials) -> Grant:
    """RFC 6749 §4.3.2: the user's name and password."""
    user = credentials.user
    assert user is not None  # config sees to it, and to both
    assert user.username
    assert user.password
    secret = user.password.reveal()
    form["username"] = user.username
    form["password"] = secret
    return Grant(form, (secret,))


def exchange(
    form: dict[str, str | list[str]],
    credentials: ClientCredentials,
    subject: SubjectToken | None,
    actor_token: str | None,
) -> Grant:
    """RFC 8693 §2.1: the caller's token as the subject, and the actor's when one acts for it."""
    settings = credentials.exchange
    assert settings is not None  # config sees to it
    assert subject is not None  # tokens.subjects makes a grant per caller's token
    secrets = [subject.value]
    form["subject_token"] = secrets[0]
    form["subject_token_type"] = settings.subject_token_type
    if settings.requested_token_type:
        form["requested_token_type"] = settings.requested_token_type
    if actor_token is not None and settings.actor_token_type:
        form["actor_token"] = actor_token
        form["actor_token_type"] = settings.actor_token_type
        secrets.append(actor_token)
    return Grant(form, tuple(secrets))
