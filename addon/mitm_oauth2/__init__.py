"""Call OAuth2-protected backends through mitmproxy: tokens are fetched, cached and injected."""

__version__ = "0.1.0"
