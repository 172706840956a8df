"""The one error hierarchy: everything the addon raises on purpose is an OAuth2Error.

Every message is safe to show to operators (no secret, token, assertion or key in it); what
callers see is chosen from it by `problem`.
"""

from __future__ import annotations


class OAuth2Error(Exception):
    """The base of the addon's errors."""


class ConfigError(OAuth2Error):
    """The configuration file or an option is wrong; the message names the file or option, the
    backend and the key."""


class TokenError(OAuth2Error):
    """No token could be had.

    `cause` is safe to show to callers and operators. `description` is the server's own
    error_description, scrubbed of the secret: for the operator's log line, not for callers.
    `retry_after` is how many seconds the server (or our backoff after its Retry-After) asks
    callers to wait, when known.
    """

    def __init__(
        self,
        cause: str,
        *,
        oauth_error: str | None = None,
        status: int | None = None,
        description: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.oauth_error = oauth_error
        self.status = status
        self.description = description
        self.retry_after = retry_after


class CallerTokenRefused(TokenError):
    """token_exchange: the caller's own token cannot be exchanged (it has expired, or the
    authorization server refused it: `oauth_error` invalid_grant or invalid_target). The
    caller must send another; the proxy's configuration is not at fault."""


class SignInRequired(TokenError):
    """refresh_token (and password when its own refresh token is refused): the server refused
    the refresh token (`invalid_grant`: revoked, expired, or presented twice), so no token can
    be had for the user until a person signs in again and gives the proxy a new one. Not tried
    again until then: each try would be refused the same way."""


class UnreadableEntry(OAuth2Error):
    """A stored value that is not a token we can read: corrupt, foreign, or sealed with
    another key (or none). Read as missing; the next token replaces it."""


class ReplayError(OAuth2Error):
    """A copy of a flow could not be sent again."""


class LearningError(OAuth2Error):
    """What an unconfigured backend says of its authorization server (RFC 9728) could not be
    used; the message says why, naming the URL (never a credential: none is sent)."""
