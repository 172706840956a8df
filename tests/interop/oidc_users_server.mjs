// panva's oidc-provider (an OpenID Certified authorization server, from npm) on 127.0.0.1, with
// end users: for the interoperability tests of the user grants (refresh_token, password),
// started and stopped by tests/interop/oidc_users.py.
//
//   node oidc_users_server.mjs --users USERS.json [--port N] [--access-ttl SECONDS]
//
// USERS.json is an array of {"username": ..., "password": ...}. Two clients: the confidential
// `user-proxy` (secret `user-proxy-secret`, client_secret_basic or client_secret_post) and the
// public `user-public` (no client authentication), both with the authorization_code,
// refresh_token and password (RFC 6749 §4.3, registered below: oidc-provider has none of its
// own) grants. Every code exchange, password grant and refresh answers with a refresh token;
// every refresh rotates it, and a rotated refresh token presented again revokes its whole grant
// (oidc-provider's reuse detection: the grant's tokens, the newest refresh token too, stop
// working). Access tokens are opaque, with the scopes asked for, and live --access-ttl s
// (default 2); refresh tokens and grants a day. The code flow needs PKCE (oidc-provider's
// default, for every client). The sign-in pages are oidc-provider's devInteractions, but the
// login form's password is checked against USERS.json here (403 if wrong); consent is automatic
// (first-party clients) unless the request has prompt=consent, which offline_access needs
// (OpenID Connect Core §11): devInteractions' consent form then grants what was asked.
// --port 0 (the default) picks a free port. When ready, prints one JSON line:
//   {"issuer": ..., "token_endpoint": ..., "authorization_endpoint": ...,
//    "introspection_endpoint": ...}
// then one JSON line per token request ({"event": "grant.success" | "grant.error", "grant_type",
// ...}), per revoked grant ({"event": "grant.revoked", "grant_id"}), per failed sign-in and per
// server error. GET /_interop/grants (outside the provider) answers with the number of
// successful token responses so far by grant type, counted before each response is sent, and
// the number of revoked grants as "revoked". Exits 0 on SIGTERM or SIGINT.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const SCOPE = 'openid offline_access api:read';
const DAY = 24 * 60 * 60;
const PASSWORD = 'password';
const CLIENT_ID = 'user-proxy';
const CLIENT_SECRET = 'user-proxy-secret';
const PUBLIC_CLIENT_ID = 'user-public';
const REDIRECT_URI = 'http://127.0.0.1/callback';

const { values: args } = parseArgs({
  options: {
    users: { type: 'string' },
    port: { type: 'string', default: '0' },
    'access-ttl': { type: 'string', default: '2' },
  },
});
const accessTtl = Number(args['access-ttl']);
if (!args.users || !Number.isInteger(accessTtl) || accessTtl < 1) {
  console.error('usage: node oidc_users_server.mjs --users USERS.json [--port N] [--access-ttl S]');
  process.exit(2);
}
const users = new Map(
  JSON.parse(readFileSync(args.users, 'utf8')).map(({ username, password }) => [username, password]),
);
const passwordMatches = (username, password) => typeof username === 'string'
  && users.has(username) && users.get(username) === password;

const grantTypes = ['authorization_code', 'refresh_token', PASSWORD];
const clients = [
  { client_id: CLIENT_ID, client_secret: CLIENT_SECRET, token_endpoint_auth_method: 'client_secret_basic' },
  { client_id: PUBLIC_CLIENT_ID, token_endpoint_auth_method: 'none' },
].map((client) => ({
  grant_types: grantTypes,
  response_types: ['code'],
  redirect_uris: [REDIRECT_URI],
  scope: SCOPE,
  ...client,
}));

const counts = { revoked: 0 };

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

// devInteractions signs in any login value: the sign-in form's password is checked here, before
// the provider sees it. The body is read here and handed on as req.body, which oidc-provider
// takes when the request stream has already been read.
async function checkLogin(req, res) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks).toString('utf8');
  req.body = body;
  const form = new URLSearchParams(body);
  if (form.get('prompt') !== 'login' || passwordMatches(form.get('login'), form.get('password'))) {
    return true;
  }
  emit({ event: 'login.error', login: form.get('login') });
  res.statusCode = 403;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.end('wrong username or password\n');
  return false;
}

// The issuer names the port, so listen first and hand requests to the provider once it exists.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const listener = async (req, res) => {
  try {
    if (req.method === 'GET' && req.url === '/_interop/grants') {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(counts));
      return;
    }
    if (req.method === 'POST' && req.url.startsWith('/interaction/') && !(await checkLogin(req, res))) {
      return;
    }
    handler(req, res);
  } catch (error) {
    emit({ event: 'server_error', error: String(error?.stack ?? error) });
    res.statusCode = 500;
    res.end();
  }
};
const server = http.createServer(listener);
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

// The scopes of `requested` (a space-separated string, or none: all of them) that the client
// may have; any other is an error.
function allowedScopes(client, requested) {
  const allowed = new Set(client.scope.split(' '));
  const scopes = requested ? [...new Set(requested.split(' '))] : [...allowed];
  const unknown = scopes.filter((scope) => !allowed.has(scope));
  if (unknown.length !== 0) {
    throw new errors.InvalidScope('requested scope is not allowed', unknown.join(' '));
  }
  return scopes;
}

const provider = new Provider(issuer, {
  clients,
  scopes: SCOPE.split(' '),
  cookies: { keys: ['interop-tests-only'] },
  findAccount: async (_ctx, sub) => (users.has(sub)
    ? { accountId: sub, claims: async () => ({ sub }) }
    : undefined),
  // First-party clients: what they ask for is granted without a consent page (one still comes
  // with prompt=consent; devInteractions' consent form grants what is missing).
  loadExistingGrant: async (ctx) => {
    const { Grant } = ctx.oidc.provider;
    const { client, session } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    let grant = grantId ? await Grant.find(grantId) : undefined;
    if (!grant) {
      grant = new Grant({ clientId: client.clientId, accountId: ctx.oidc.account.accountId });
    }
    if (ctx.oidc.params.scope) {
      grant.addOIDCScope(ctx.oidc.params.scope);
    }
    await grant.save();
    return grant;
  },
  rotateRefreshToken: true,
  issueRefreshToken: async () => true,
  // Refresh tokens outlive the sign-in session, with offline_access or not.
  expiresWithSession: async () => false,
  ttl: { AccessToken: accessTtl, RefreshToken: DAY, Grant: DAY },
  features: {
    devInteractions: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated client of this test server may introspect any token.
      allowedPolicy: async () => true,
    },
    // Access tokens are opaque, with the scopes asked for (no audience).
    resourceIndicators: { enabled: false },
  },
});

// RFC 6749 §4.3: the resource owner's username and password, checked against USERS.json; a
// Grant for the account and client with the scopes asked for, and tokens bound to it as the
// authorization_code grant binds them, so that refreshing goes through oidc-provider's own
// refresh_token grant (rotation, reuse detection).
async function passwordGrant(ctx, next) {
  const { client, params } = ctx.oidc;
  const { AccessToken, Grant, RefreshToken } = ctx.oidc.provider;
  if (!params.username || params.password === undefined) {
    throw new errors.InvalidRequest('username and password are required');
  }
  if (!passwordMatches(params.username, params.password)) {
    throw new errors.InvalidGrant('wrong username or password');
  }
  const scopes = allowedScopes(client, params.scope);
  const account = await ctx.oidc.provider.Account.findAccount(ctx, params.username);
  ctx.oidc.entity('Account', account);

  const grant = new Grant({ accountId: account.accountId, clientId: client.clientId });
  grant.addOIDCScope(scopes.join(' '));
  const grantId = await grant.save();
  ctx.oidc.entity('Grant', grant);

  const at = new AccessToken({ accountId: account.accountId, client, grantId, gty: PASSWORD });
  at.scope = grant.getOIDCScopeFiltered(new Set(scopes));
  ctx.oidc.entity('AccessToken', at);
  const accessToken = await at.save();

  const rt = new RefreshToken({
    accountId: account.accountId,
    client,
    grantId,
    gty: PASSWORD,
    rotations: 0,
    scope: scopes.join(' '),
  });
  ctx.oidc.entity('RefreshToken', rt);
  const refreshToken = await rt.save();

  ctx.body = {
    access_token: accessToken,
    token_type: at.tokenType,
    expires_in: at.expiration,
    refresh_token: refreshToken,
    scope: at.scope,
  };
  await next();
}
provider.registerGrantType(PASSWORD, passwordGrant, ['username', 'password', 'scope']);

provider.on('grant.success', (ctx) => {
  const grantType = ctx.oidc.params.grant_type;
  counts[grantType] = (counts[grantType] ?? 0) + 1;
  emit({ event: 'grant.success', grant_type: grantType, client_id: ctx.oidc.client?.clientId ?? null });
});
provider.on('grant.error', (ctx, error) => {
  emit({
    event: 'grant.error',
    grant_type: ctx.oidc?.params?.grant_type ?? null,
    client_id: ctx.oidc?.client?.clientId ?? null,
    error: error.error ?? error.message,
    error_description: error.error_description ?? null,
    // Not in the response (oidc-provider answers "grant request is invalid"): the reason.
    error_detail: error.error_detail ?? null,
  });
});
provider.on('grant.revoked', (_ctx, grantId) => {
  counts.revoked += 1;
  emit({ event: 'grant.revoked', grant_id: grantId });
});
provider.on('authorization.error', (_ctx, error) => {
  emit({
    event: 'authorization.error',
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
  authorization_endpoint: provider.urlFor('authorization'),
  introspection_endpoint: provider.urlFor('introspection'),
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
