// panva's oidc-provider (an OpenID Certified authorization server, from npm) on 127.0.0.1,
// for the interoperability tests: started and stopped by tests/interop/conftest.py.
//
//   node oidc_server.mjs --clients CLIENTS.json [--port N]
//                        [--tls-cert PEM --tls-key PEM --client-ca PEM]
//
// With --tls-*, it serves HTTPS and asks for client certificates issued by --client-ca: RFC 8705
// (tls_client_auth, self_signed_tls_client_auth, certificate-bound access tokens).
// CLIENTS.json is an array of client metadata (client_id, token_endpoint_auth_method,
// client_secret or jwks, scope); every client gets the client_credentials grant and token
// exchange (RFC 8693, registered below: oidc-provider has none of its own), which takes a
// client-credentials token of this provider as the subject token.
// --port 0 (the default) picks a free port. When ready, prints one JSON line:
//   {"issuer": ..., "token_endpoint": ..., "introspection_endpoint": ..., "resource": ...}
// then one JSON line per token request ({"event": "grant.success" | "grant.error", ...}) and
// per introspection error. GET /_interop/grants (outside the provider) answers with the number
// of tokens issued so far by client id, counted before each token response is sent.
// Exits 0 on SIGTERM or SIGINT.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

// The API the tokens are for (RFC 8707 resource indicator); requested or not, every
// client-credentials token is issued for it.
const RESOURCE = 'urn:mitm-oauth2:interop-api';
const RESOURCE_SCOPE = 'api:read api:write';
const LOOPBACK_RESOURCE = /^https:\/\/127\.0\.0\.1:\d+$/;
const TOKEN_TTL = 600;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string' },
    port: { type: 'string', default: '0' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'client-ca': { type: 'string' },
  },
});
const tls = args['tls-cert']
  ? {
      cert: readFileSync(args['tls-cert']),
      key: readFileSync(args['tls-key']),
      ca: readFileSync(args['client-ca']),
      requestCert: true, // asked for, verified by Node against the CA, judged by the provider
      rejectUnauthorized: false,
    }
  : null;
if (!args.clients) {
  console.error('usage: node oidc_server.mjs --clients CLIENTS.json [--port N]');
  process.exit(2);
}
const clients = JSON.parse(readFileSync(args.clients, 'utf8')).map((client) => ({
  grant_types: ['client_credentials', TOKEN_EXCHANGE],
  response_types: [],
  redirect_uris: [],
  ...client,
}));

const issued = {};

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

// The issuer names the port, so listen first and hand requests to the provider once it exists.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const listener = (req, res) => {
  if (req.method === 'GET' && req.url === '/_interop/grants') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(issued));
    return;
  }
  handler(req, res);
};
const server = tls ? https.createServer(tls, listener) : http.createServer(listener);
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), '127.0.0.1', resolve);
});
const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}`;

// RFC 8705 on a TLS socket of this process: the certificate Node verified against --client-ca.
const peerCertificate = (ctx) => ctx.socket.getPeerX509Certificate?.();
const mTLS = tls
  ? {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: peerCertificate,
      certificateAuthorized: (ctx) => ctx.socket.authorized === true,
      // tls_client_auth_subject_dn "CN=name": the subject's CN (the rest is the test CA's).
      certificateSubjectMatches: (ctx, property, expected) => {
        const peer = peerCertificate(ctx);
        if (!peer || property !== 'tls_client_auth_subject_dn') {
          return false;
        }
        return peer.subject.split('\n').includes(expected);
      },
    }
  : { enabled: false };
const authMethods = ['client_secret_basic', 'client_secret_post', 'client_secret_jwt'];
authMethods.push('private_key_jwt', 'none');
if (tls) {
  authMethods.push('tls_client_auth', 'self_signed_tls_client_auth');
}

const provider = new Provider(issuer, {
  clients,
  // A client's registered `scope` may only name scopes listed here.
  scopes: ['openid', 'offline_access', ...RESOURCE_SCOPE.split(' ')],
  // Only signs cookies, which the client-credentials grant never sets.
  cookies: { keys: ['interop-tests-only'] },
  clientAuthMethods: authMethods,
  features: {
    mTLS,
    // RFC 9449: DPoP-bound tokens for requests with a proof, always with a server nonce.
    dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated client of this test server may introspect any token.
      allowedPolicy: async () => true,
    },
    // Without a resource server oidc-provider issues client-credentials tokens without an
    // audience. With one (RFC 8707; used when the request names none), a token names the API
    // in `aud` and carries only the scopes that API defines: the backend checks both.
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      // Also the tests' resource servers that name themselves by URL (RFC 9728 metadata).
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE && !LOOPBACK_RESOURCE.test(resourceIndicator)) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: RESOURCE_SCOPE,
          audience: resourceIndicator,
          accessTokenFormat: 'opaque',
          accessTokenTTL: TOKEN_TTL,
        };
      },
    },
  },
  ttl: { ClientCredentials: TOKEN_TTL },
  // An exchanged token names, in introspection, the client whose token it was exchanged for.
  extraTokenClaims: async (_ctx, token) => (token.actsFor ? { act: { sub: token.actsFor } } : undefined),
});

// RFC 8693 §2: the subject token must be an access token this provider issued (found in its own
// store, not expired); the token issued is the exchanging client's, for the API (the resource
// asked for, which must be the API), with the scopes asked for that the API defines, and lives
// no longer than the subject token.
async function tokenExchange(ctx, next) {
  const { client, params } = ctx.oidc;
  const { ClientCredentials } = ctx.oidc.provider;
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('subject_token_type must be an access token');
  }
  const subject = await ClientCredentials.find(params.subject_token);
  if (!subject || subject.isExpired) {
    throw new errors.InvalidGrant('subject_token is not an active token of this provider');
  }
  const resources = [params.resource ?? RESOURCE].flat();
  if (resources.length !== 1 || resources[0] !== RESOURCE) {
    throw new errors.InvalidTarget('the only resource here is the API');
  }
  const api = new Set(RESOURCE_SCOPE.split(' '));
  const scope = (params.scope ?? '').split(' ').filter((s) => api.has(s)).join(' ');
  const token = new ClientCredentials({ client, scope: scope || undefined });
  token.resourceServer = {
    scope: RESOURCE_SCOPE,
    audience: RESOURCE,
    accessTokenFormat: 'opaque',
    accessTokenTTL: Math.max(1, Math.min(TOKEN_TTL, subject.remainingTTL ?? TOKEN_TTL)),
  };
  // Who it acts for (RFC 8693 §4.1): the subject token's client (extraTokenClaims says so).
  token.actsFor = subject.clientId;
  ctx.oidc.entity('ClientCredentials', token);
  const value = await token.save();
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: token.tokenType,
    expires_in: token.expiration,
    scope: token.scope || undefined,
  };
  await next();
}
provider.registerGrantType(
  TOKEN_EXCHANGE,
  tokenExchange,
  ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'audience', 'resource', 'scope'],
  ['audience', 'resource'],
);

provider.on('grant.success', (ctx) => {
  const clientId = ctx.oidc.client?.clientId ?? null;
  issued[clientId] = (issued[clientId] ?? 0) + 1;
  emit({ event: 'grant.success', client_id: clientId });
});
provider.on('grant.error', (ctx, error) => {
  emit({
    event: 'grant.error',
    client_id: ctx.oidc.client?.clientId ?? null,
    error: error.error ?? error.message,
    error_description: error.error_description ?? null,
  });
});
provider.on('introspection.error', (_ctx, error) => {
  emit({ event: 'introspection.error', error: error.error ?? error.message });
});
provider.on('server_error', (_ctx, error) => {
  emit({ event: 'server_error', error: String(error?.stack ?? error) });
});

handler = provider.callback();
emit({
  issuer,
  token_endpoint: provider.urlFor('token'),
  introspection_endpoint: provider.urlFor('introspection'),
  resource: RESOURCE,
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
