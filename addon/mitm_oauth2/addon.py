"""The mitmproxy addon: matches flows to backends and puts a bearer token on them.

This is glue only: options and hooks. Tokens come from the broker.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import time
from collections.abc import Awaitable
from collections.abc import Set
from pathlib import Path

from mitmproxy import addonmanager
from mitmproxy import ctx
from mitmproxy import exceptions
from mitmproxy import http
from mitmproxy import tls

from . import store_options
from . import story
from .bound_certs import BoundCertificates
from .challenge import ScopeRefusal
from .challenge import Scopes
from .challenge import dpop_nonce_asked
from .challenge import scope_wanted
from .challenge import token_scopes
from .client.dpop import Nonces
from .client.dpop import proof
from .client.resource_metadata import ResourceLearner
from .client.token_client import TokenClient
from .commands import OAuth2Commands
from .config.backend import BackendConfig
from .config.file import Config
from .config.hosts import HostRouter
from .config.watch import ConfigWatcher
from .destination import Destinations
from .exchange import Callers
from .learning import Learning
from .metrics import MetricsEndpoint
from .model.credentials import GrantType
from .model.credentials import TokenGrant
from .model.errors import CallerTokenRefused
from .model.errors import ConfigError
from .model.errors import TokenError
from .phantom import PhantomGrant
from .problem import Problem
from .problem import token_unavailable
from .redaction import redact
from .redaction import redact_presented
from .replay import Replays
from .startup import fatal_at_startup
from .startup import unknown_options
from .startup import warn_if_exposed
from .store.guard import GuardedStore
from .tokens.broker import DEFAULT_LOCK_LEASE
from .tokens.broker import Issued
from .tokens.broker import TokenBroker
from .tokens.status import BackendStatus

logger = logging.getLogger(__name__)

CACHE_DIR_NAME = "oauth2-token-cache"
MAX_NEAR_MISSES = 1024
# Options that decide where tokens live: a change of any opens a new broker on the new store.
STORE_OPTIONS = frozenset(
    {
        "oauth2_cache_dir",
        "oauth2_lock_lease",
        *store_options.NAMES,
        "confdir",
    }
)
# Loader.add_option is annotated `type`, but mitmproxy's option parser takes this union.
OPTIONAL_STR: type = str | None  # type: ignore[assignment]


def freeze_loaded_objects() -> None:
    """Takes what start-up loaded out of the garbage collector's sight, once per process.

    Modules, classes and options live as long as the process, and this addon's imports (httpx,
    cryptography, redis-py, diskcache) add a third to mitmproxy's objects. Every full collection
    would walk them all again: under load, one in a few thousand requests waits for it, about a
    percent of throughput. Frozen, they are never collected; what is made later is as usual.
    """
    if gc.get_freeze_count() == 0:  # a hot reload, or the host, has frozen them already
        gc.collect()  # garbage left by start-up is freed now, not frozen with the rest
        gc.freeze()


def _warn_of_passwords(
    backends: tuple[BackendConfig, ...], before: tuple[BackendConfig, ...]
) -> None:
    """Once per backend that starts using the password grant (at start-up, or a reload)."""
    known = {backend.name for backend in before if _by_password(backend)}
    for backend in backends:
        if _by_password(backend) and backend.name not in known:
            logger.warning(
                'backend %s: grant = "password" gives the proxy a user\'s password, which '
                "RFC 9700 §2.4 says must not be done: keep it to legacy backends and test users",
                backend.name,
            )


def _by_password(backend: BackendConfig) -> bool:
    return backend.grant.credentials.grant is GrantType.PASSWORD


def open_broker(store: GuardedStore, lock_lease: float) -> TokenBroker:
    """The production wiring: the broker asks the httpx token client, and keeps tokens in the
    guarded store (disk cache or Redis) the store options name."""
    return TokenBroker(TokenClient(), store, lock_lease=lock_lease)


class OAuth2Backend:
    """Injects `Authorization: Bearer <token>` into requests to configured OAuth2 backends."""

    def __init__(self) -> None:
        self.router: HostRouter[BackendConfig] = HostRouter()
        # host:port of requests that nearly matched a backend, told once per configuration
        self.near_misses: set[tuple[str, int]] = set()
        # (backend, scopes wanted, scopes the token has) of the refusals logged
        self.scope_refusals: set[tuple[str, Scopes, Scopes]] = set()
        self.backends: tuple[BackendConfig, ...] = ()
        self.by_name: dict[str, BackendConfig] = {}
        self.redacting = True  # oauth2_redact
        self.destinations = Destinations()
        self.bound = BoundCertificates()
        self.dpop_nonces = Nonces()  # the backends' DPoP nonces (RFC 9449 §9)
        self.broker: TokenBroker | None = None
        self.store: GuardedStore | None = None  # the broker's, whose health the status tells
        self.cache_dir: Path | None = None
        self.store_options: tuple[object, ...] = ()
        self.replays = Replays()
        self.callers = Callers(self._forget)  # token_exchange: a grant per caller's token
        self.phantoms = PhantomGrant()  # phantom backends: their token endpoints answered here
        self.learning = Learning(self._make_learner)
        self.watcher = ConfigWatcher(self._reload)
        # Parts with options, commands or lifecycle hooks of their own, but no flow hook: not
        # nested addons, which mitmproxy would visit on every event of every request (eight per
        # request); this addon hands them load, configure and done itself.
        self.commands = OAuth2Commands(self)
        self.metrics = MetricsEndpoint(self.statuses)

    def load(self, loader: addonmanager.Loader) -> None:
        self._declare(loader)
        store_options.declare(loader)
        self.metrics.load(loader)
        loader.master.commands.collect_commands(self.commands)

    def configure(self, updated: Set[str]) -> None:
        self._configure(updated)  # an OptionsError refuses the update before metrics sees it
        self.metrics.configure(updated)

    def done(self) -> None:
        self._close()
        self.metrics.done()

    def _declare(self, loader: addonmanager.Loader) -> None:
        loader.add_option(
            "oauth2_config",
            OPTIONAL_STR,
            None,
            """
            Path of the TOML file of [[backend]] tables: which hosts are OAuth2-protected
            backends, and how to get their tokens (client-credentials grant). It and the files it
            names are checked every second; a broken change keeps the last good configuration.
            """,
        )
        loader.add_option(
            "oauth2_cache_dir",
            OPTIONAL_STR,
            None,
            f"""
            Directory of the persistent token cache (created 0700).
            Default: {CACHE_DIR_NAME} inside mitmproxy's confdir.
            """,
        )
        loader.add_option(
            "oauth2_learn",
            bool,
            True,
            """
            Learn the backends no [[backend]] names from their 401s that name their OAuth
            metadata (RFC 9728): read it and its authorization server's, and offer a
            [[backend]] table (oauth.suggest). Nothing but those two GETs is sent.
            """,
        )
        loader.add_option(
            "oauth2_redact",
            bool,
            True,
            """
            Once a request has gone upstream, replace the token on the flow's copy of it with
            "[redacted <fingerprint>]" (a DPoP proof with "[redacted]"), so that mitmweb, saved
            flows, HAR exports and mitmdump's dumps hold no live token; a refused request's copy
            of the token its caller sent (token_exchange, phantom) at once.
            """,
        )
        loader.add_option(
            "oauth2_lock_lease",
            int,
            int(DEFAULT_LOCK_LEASE),
            """
            Seconds one process may hold the token cache's lock while it asks for a token;
            processes sharing the cache wait at most this long for a holder that died.
            """,
        )

    @fatal_at_startup
    def _configure(self, updated: Set[str]) -> None:
        warn_if_exposed(updated)
        if "oauth2_redact" in updated:
            self.redacting = ctx.options.oauth2_redact  # read on every response
        if "oauth2_learn" in updated:
            self.learning.enabled = ctx.options.oauth2_learn
        if "oauth2_config" in updated:
            # Options of ours that nothing declared are still deferred once we are loaded.
            unknown = unknown_options(ctx.options.deferred, ctx.options.keys())
            if unknown is not None:
                raise exceptions.OptionsError(unknown)
        if not (STORE_OPTIONS | {"oauth2_config"}) & updated:
            return
        if ctx.options.oauth2_lock_lease < 1:
            raise exceptions.OptionsError("oauth2_lock_lease: must be at least 1 second")
        if ctx.options.oauth2_config is None:
            self._install(HostRouter(), BoundCertificates(), ())
            self.watcher.follow(None)
            logger.warning("oauth2_config is not set: no backend gets tokens")
            return
        path = Path(os.path.expanduser(ctx.options.oauth2_config))
        if self.watcher.is_current(path):
            # Same file, not changed since read: keep what runs. This is also how mitmproxy rolls
            # back a refused update (configure again with the old values); edits of the file
            # itself are the watcher's business, and it keeps the last good version running.
            self._open_store()
            self._look_after_stored_tokens()
            return
        # Everything is read and validated before anything is swapped: a refused update (which
        # mitmproxy rolls back) leaves router, broker and watcher as they were.
        try:
            snapshot = self.watcher.load(path)
            router = self._route(snapshot.config)
            bound = BoundCertificates(snapshot.config.backends)
        except (ConfigError, ValueError) as e:
            raise exceptions.OptionsError(str(e)) from e
        self._open_store()
        self._install(router, bound, snapshot.config.backends)
        self.watcher.follow(snapshot)
        config = snapshot.config
        names = ", ".join(backend.name for backend in config.backends)
        logger.info("oauth2: %d backend(s) from %s: %s", len(config.backends), config.path, names)

    @staticmethod
    def _route(config: Config) -> HostRouter[BackendConfig]:
        return HostRouter(
            (host, backend.path_prefix, backend)
            for backend in config.backends
            for host in backend.hosts
        )

    def _reload(self, config: Config) -> None:
        """The watcher's callback for a changed file: no await in between, so no flow sees a mix."""
        try:
            bound = BoundCertificates(config.backends)
        except ValueError as e:
            raise ConfigError(f"{config.path}: {e}") from e
        self._install(self._route(config), bound, config.backends)

    def _install(
        self,
        router: HostRouter[BackendConfig],
        bound: BoundCertificates,
        backends: tuple[BackendConfig, ...],
    ) -> None:
        _warn_of_passwords(backends, self.backends)
        self.router, self.bound, self.backends = router, bound, backends
        self.by_name = {backend.name: backend for backend in backends}
        self.destinations = Destinations()  # its answers depend on the backends' settings
        self.near_misses.clear()  # a new configuration may miss, or match, other requests
        self.scope_refusals.clear()
        self.callers.configure(backends)
        self.phantoms.configure(backends)
        # mitmproxy looks a hook up by name for every event of every request: the request hook,
        # which answers the clients' token requests, exists only while a phantom backend does.
        if self.phantoms.active:
            vars(self)["request"] = self._phantom_token_request
        else:
            vars(self).pop("request", None)
        self.phantoms.discover_soon()
        self._look_after_stored_tokens()

    def _forget(self, grant: TokenGrant) -> None:
        if self.broker is not None:
            self.broker.forget(grant)

    def running(self) -> None:
        # Synchronous on purpose: script hot reload calls running/done without awaiting them.
        freeze_loaded_objects()
        self.phantoms.discover_soon()
        self.watcher.start()
        self._look_after_stored_tokens()

    def _look_after_stored_tokens(self) -> None:
        """So that `oauth.status` tells a token another process stored (see the broker)."""
        if self.broker is not None:
            self.broker.look_after(tuple(backend.grant for backend in self.backends))

    def statuses(self) -> list[tuple[str, BackendStatus]]:
        """Per configured backend, by name: its token, counters and store."""
        broker, store = self.broker, self.store
        if broker is None or store is None:
            return []
        ok = not store.failing
        return [
            (backend.name, self._status(backend, broker.status(backend.grant, store_ok=ok)))
            for backend in self.backends
        ]

    def grants(self, backend: BackendConfig) -> list[TokenGrant]:
        """The grants that hold `backend`'s tokens: its own, or a token_exchange backend's
        callers' (its own holds none)."""
        if backend.subject_header is None:
            return [backend.grant]
        return self.callers.grants(backend.name)

    def _status(self, backend: BackendConfig, status: BackendStatus) -> BackendStatus:
        if backend.subject_header is None:
            return status
        # The backend's own grant holds no token: each caller's does (see tokens.subjects).
        return dataclasses.replace(status, callers=self.callers.callers(backend.name))

    def _cache_dir(self) -> Path:
        if ctx.options.oauth2_cache_dir:
            return Path(ctx.options.oauth2_cache_dir).expanduser()
        return Path(ctx.options.confdir).expanduser() / CACHE_DIR_NAME

    def _open_store(self) -> None:
        """A new broker when the store options changed; a bad value refuses the update."""
        options = tuple(getattr(ctx.options, name) for name in sorted(STORE_OPTIONS))
        if self.broker is not None and options == self.store_options:
            return
        cache_dir = self._cache_dir()
        settings = store_options.settings(cache_dir)
        store = settings.open()
        broker = open_broker(store, lock_lease=float(ctx.options.oauth2_lock_lease))
        if self.broker is not None:
            self.broker.close()
        self.broker, self.store = broker, store
        self.cache_dir, self.store_options = cache_dir, options
        logger.info("oauth2: tokens kept in the %s", settings.where)

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        # Synchronous while a valid token is in memory (the hot path: no coroutine per flow);
        # mitmproxy awaits what a hook returns, so only a request that must wait gets one.
        # A replay given up on while queued must not reach the backend after its caller's answer.
        self.replays.drop_abandoned(flow)
        if flow.response or flow.error or not flow.live or self.broker is None:
            return None
        request = flow.request
        if self.phantoms.active:
            if self._phantom_endpoint(flow):
                return None
            waiting = self.phantoms.awaiting_discovery(request)
            if waiting:
                return self._after_discovery(flow, waiting)
        host, port, scheme = request.host, request.port, request.scheme
        backend = self.router.match(host, port, scheme, request.path)
        if backend is None:
            self._note_near_miss(request)
            return None
        refused = self.destinations.refusal(
            backend, host, port, scheme, request.headers.fields, request.authority
        )
        if refused is not None:
            logger.warning("backend %s: %s", backend.name, refused.problem.detail)
            self._refuse(flow, backend, refused.problem, refused.cause)
            return None
        if backend.phantom and flow.is_replay != "request":  # a replay has no phantom: ours
            phantom = self.phantoms.swap_refusal(request, backend)
            if phantom is not None:
                self._refuse(flow, backend, phantom, phantom.detail)
                return None
        grant = backend.grant
        if backend.subject_header is not None:  # token_exchange: the caller's grant
            chosen = self.callers.grant(request, backend)
            if isinstance(chosen, Problem):
                self._refuse(flow, backend, chosen, chosen.detail)
                return None
            grant = chosen
        try:
            issue = self.broker.issue_held(grant)
        except Exception as e:
            self._failed(flow, backend, e)
            return None
        if issue is None:
            story.matched(flow, backend.name)  # while it waits, mitmweb shows whose token
            return self._issue_and_inject(flow, backend, grant, self.broker)
        self._inject(flow, backend, grant, issue)
        return None

    async def _issue_and_inject(
        self, flow: http.HTTPFlow, backend: BackendConfig, grant: TokenGrant, broker: TokenBroker
    ) -> None:
        try:
            issue = await broker.issue(grant)
        except Exception as e:
            self._failed(flow, backend, e)
            return
        self._inject(flow, backend, grant, issue)

    def _phantom_endpoint(self, flow: http.HTTPFlow) -> bool:
        """A client's token request to a phantom backend's token endpoint: noted, so that the
        request hook (once its form is read) answers it; never forwarded."""
        backend = self.phantoms.endpoint_of(flow.request)
        if backend is None:
            return False
        flow.request.stream = False  # the form is read before anything could go upstream
        story.phantom_asked(flow, backend.name)
        return True

    async def _after_discovery(self, flow: http.HTTPFlow, backends: list[BackendConfig]) -> None:
        """A request to the issuer of phantom backends whose token endpoint is not known yet:
        once the proxy has found it, handled as every request is. Fails closed: were it the
        token request, it would carry the client's credentials to the server."""
        try:
            await self.phantoms.discover(backends)
        except Exception as e:
            self._failed(flow, backends[0], e)
            return
        after = self.requestheaders(flow)
        if after is not None:
            await after

    def _phantom_token_request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """The request hook while phantom backends exist: a client's token request noted by
        requestheaders gets a phantom token (or the token endpoint's kind of error)."""
        meta = flow.metadata.get("oauth2")
        if flow.response or not isinstance(meta, dict) or not meta.get("phantom_grant"):
            return None
        backend = self.by_name.get(str(meta.get("backend")))
        if backend is None or not backend.phantom or self.broker is None:  # a reload, since
            flow.response = self.phantoms.oauth_error("invalid_request", "no such backend now")
            return None
        refusal = self.phantoms.grant_refusal(flow.request)
        if refusal is not None:
            flow.response = self.phantoms.oauth_error(*refusal)
            story.phantom_refused(flow, backend.name, refusal[1])
            return None
        try:
            issue = self.broker.issue_held(backend.grant)
        except Exception as e:
            self._failed(flow, backend, e)
            return None
        if issue is None:
            return self._answer_phantom_later(flow, backend, self.broker)
        self._answer_phantom(flow, backend, issue)
        return None

    async def _answer_phantom_later(
        self, flow: http.HTTPFlow, backend: BackendConfig, broker: TokenBroker
    ) -> None:
        try:
            issue = await broker.issue(backend.grant)
        except Exception as e:
            self._failed(flow, backend, e)
            return
        self._answer_phantom(flow, backend, issue)

    def _answer_phantom(self, flow: http.HTTPFlow, backend: BackendConfig, issue: Issued) -> None:
        flow.response = self.phantoms.answer(backend, issue)
        story.phantom_issued(flow, backend.name, issue)

    def _failed(self, flow: http.HTTPFlow, backend: BackendConfig, e: Exception) -> None:
        if isinstance(e, CallerTokenRefused):  # token_exchange: the caller must act, not us
            self._refuse(flow, backend, self.callers.refused(backend.name, e), e.cause)
            return
        if not isinstance(e, TokenError):  # a bug must fail closed: never forward without it
            logger.error("backend %s: unexpected failure getting a token", backend.name, exc_info=e)
            e = TokenError(f"internal error ({type(e).__name__})")
        self._refuse(flow, backend, token_unavailable(backend.name, e), e.cause)

    def _inject(
        self, flow: http.HTTPFlow, backend: BackendConfig, grant: TokenGrant, issue: Issued
    ) -> None:
        try:
            self._put_token(flow, backend, issue)
            if backend.subject_header is not None:
                self.callers.sent(flow, backend, grant)
            elif backend.phantom and backend.header.lower() != "authorization":
                flow.request.headers.pop("Authorization", None)  # the phantom token stays here
        except Exception as e:  # fails closed: never forwarded without its token or proof
            self._failed(flow, backend, e)

    def _put_token(self, flow: http.HTTPFlow, backend: BackendConfig, issue: Issued) -> None:
        # Replaces whatever the caller sent under that name (every copy of the header). HTTP/2
        # and 3 want names in lower case; mitmproxy would fix it and log so for each request.
        request = flow.request
        lower = request.is_http2 or request.is_http3
        name = backend.header.lower() if lower else backend.header
        access_token = issue.token.access_token
        dpop = issue.token.dpop_key
        signed = None
        if dpop is not None:  # RFC 9449 §7: and a proof of its key for this very request
            url = request.url
            nonce = self.dpop_nonces.get(url)
            signed = proof(
                dpop, request.method, url, time.time(), access_token=access_token, nonce=nonce
            )
        story.issued(flow, backend.name, issue, name, proof=signed is not None)
        request.headers[name] = backend.header_format.replace("{token}", access_token)
        if signed is not None:
            request.headers["dpop" if lower else "DPoP"] = signed

    def _note_near_miss(self, request: http.Request) -> None:
        """Says once per host:port (and configuration) which backend nearly took a request
        that goes on without a token, and why it did not."""
        place = (request.host, request.port)
        if place in self.near_misses:
            return
        miss = self.router.near_miss(request.host, request.port, request.scheme, request.path)
        if miss is None:
            return
        if len(self.near_misses) >= MAX_NEAR_MISSES:  # bounded, whatever hosts clients name
            self.near_misses.clear()
        self.near_misses.add(place)
        text = miss.describe(
            miss.target.name, request.host, request.port, request.scheme, request.path
        )
        # A path outside path_prefix is often meant; another port or scheme rarely is.
        logger.log(logging.INFO if miss.why == "path" else logging.WARNING, "oauth2: %s", text)

    def tls_start_server(self, tls_start: tls.TlsData) -> None:
        if self.bound:  # per TLS connection, not per request; most configurations have none
            self.bound.present(tls_start)

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        # Synchronous unless a 401 may mean our token was rejected (a coroutine only then).
        if self.replays.settle(flow):
            self._redact(flow)
            return None  # one of our replays: the request waiting for it takes its answer
        caller = self.callers.answered(flow) if self.callers.in_flight else None
        after = self._answered(flow, caller)
        if after is None:
            self._redact(flow)
            return None
        return self._redact_after(after, flow)

    async def _redact_after(self, after: Awaitable[None], flow: http.HTTPFlow) -> None:
        try:
            await after
        finally:
            self._redact(flow)

    @staticmethod
    def _make_learner() -> ResourceLearner:
        # Metadata is fetched with the trust mitmproxy gives the backend's own connections.
        return ResourceLearner(ca_file=ctx.options.ssl_verify_upstream_trusted_ca)

    def _redact(self, flow: http.HTTPFlow) -> None:
        if self.redacting:
            redact(flow, self.by_name)

    def _answered(self, flow: http.HTTPFlow, caller: TokenGrant | None) -> Awaitable[None] | None:
        """What the backend's answer leads to: nothing, or (a 401 that may mean our token was
        rejected, or one from a host that says how to get its tokens) a coroutine. `caller`:
        the caller's grant the flow was sent with (token_exchange)."""
        if flow.error or not flow.live:
            return None
        if flow.response is None or flow.response.status_code not in (401, 403):
            return None
        if "oauth2" not in flow.metadata:  # no backend took it (or none is configured)
            return self.learning.response(flow) if flow.response.status_code == 401 else None
        backend = self._backend_of(flow)
        if backend is None or self.broker is None:
            return None
        grant = caller or backend.grant
        wanted = scope_wanted(flow.response)
        if wanted is not None:  # not a bad token: a fresh one would have the same scopes
            self._scope_refused(flow, backend, grant, self.broker, wanted)
            return None
        if flow.response.status_code != 401:
            return None
        if backend.subject_header is not None and caller is None:
            return None  # the caller's grant is not known (a reload came in between)
        return self._after_401(flow, backend, grant, self.broker)

    def _scope_refused(
        self,
        flow: http.HTTPFlow,
        backend: BackendConfig,
        grant: TokenGrant,
        broker: TokenBroker,
        wanted: Scopes,
    ) -> None:
        """Tells what the backend wanted and what the token has, on the flow, in the status
        and once in the log (per backend and scopes, until the configuration changes)."""
        has = token_scopes(broker.valid_token(grant), backend)
        refusal = ScopeRefusal(wanted, has)
        story.scope_refused(flow, backend.name, refusal)
        broker.counters.of(backend.name).scope_refused(refusal.describe())
        told = (backend.name, wanted, has)
        if told in self.scope_refusals:
            return
        if len(self.scope_refusals) >= MAX_NEAR_MISSES:
            self.scope_refusals.clear()
        self.scope_refusals.add(told)
        logger.warning(
            "backend %s: the backend refused the token for lack of scope (%s): add what it "
            "wants to `scope` of this backend, if the authorization server grants it to the "
            "client",
            backend.name,
            refusal.describe(),
        )

    async def _after_401(
        self, flow: http.HTTPFlow, backend: BackendConfig, grant: TokenGrant, broker: TokenBroker
    ) -> None:
        response, dpop = flow.response, backend.grant.credentials.dpop
        nonce = dpop_nonce_asked(response) if response is not None and dpop else None
        if nonce is not None:  # RFC 9449 §9: the same token again, its proof with the nonce
            self.dpop_nonces.keep(flow.request.url, nonce)
            outcome = await self.replays.with_nonce(flow, backend)
            story.after_401(flow, outcome)
            return
        outcome = await self.replays.on_response(flow, backend, grant, broker)
        if outcome.no_token is not None:
            cause = f"token rejected (401), no fresh one: {outcome.no_token.cause}"
            self._refuse(flow, backend, token_unavailable(backend.name, outcome.no_token), cause)
            return
        story.after_401(flow, outcome)
        if outcome.replayed:
            broker.counters.of(backend.name).replays += 1

    def error(self, flow: http.HTTPFlow) -> None:
        self.replays.settle(flow)
        self.callers.answered(flow)
        self._redact(flow)

    def _backend_of(self, flow: http.HTTPFlow) -> BackendConfig | None:
        """The backend whose token `requestheaders` put on this flow, if it did."""
        meta = flow.metadata.get("oauth2")
        if not isinstance(meta, dict) or "error" in meta:
            return None
        request = flow.request
        backend = self.router.match(request.host, request.port, request.scheme, request.path)
        # The current settings (retry_on_401 may have changed); never another backend's grant.
        return backend if backend is not None and backend.name == meta.get("backend") else None

    def _refuse(
        self, flow: http.HTTPFlow, backend: BackendConfig, problem: Problem, cause: str
    ) -> None:
        # A streamed body would go upstream before our answer; buffer it so nothing is forwarded.
        flow.request.stream = False
        flow.response = http.Response.make(problem.status, problem.to_json(), problem.headers())
        story.refused(flow, backend.name, cause)
        presented = backend.subject_header or ("Authorization" if backend.phantom else None)
        if presented is not None and self.redacting:
            redact_presented(flow.request, presented)

    def _close(self) -> None:
        self.watcher.stop()
        self.learning.close()
        self.phantoms.close()
        if self.broker is not None:
            self.broker.close()
            self.broker = None
