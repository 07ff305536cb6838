// The OpenID provider the tests talk to: node-oidc-provider with hpcgate's clients.
//
// Run by scripts/idp (which copies this file next to its node_modules). Environment:
//   IDP_PORT    the port on 127.0.0.1 (the issuer is http://127.0.0.1:PORT)
//   IDP_KEYS    a JSON file of private JWKs; made if missing
//   IDP_ROTATE  "1": put a new RS256 and a new ES256 key first (they sign from now on),
//               keeping the old ones published until a restart with IDP_RETIRE=1
//   IDP_RETIRE  "1": drop every key but the newest of each type
//
// Test-only routes of our own (loopback only, never in a real provider):
//   GET  /_test/stats             {"jwks": n, "revocations": n}: how often the JWKS
//                                 was fetched, how many revocations were asked
//   POST /_test/jwks?down=1|0     the JWKS endpoint answers 503 while down
//   POST /_test/sign?alg=RS256    the JSON body's claims signed with the provider's current
//                                 key: for the tests' hand-made cases (expired, not yet
//                                 valid, another issuer), never for the flows
//   POST /_test/account?sub=NAME  the JSON body's claims (email, groups ...) go into every
//                                 access token of user NAME from now on, as an IdP's
//                                 directory would put them: for the mapping-rule tests
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

import { importJWK, SignJWT } from 'jose';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.IDP_PORT || 9480);
const keysFile = process.env.IDP_KEYS || 'keys.json';
const issuer = `http://127.0.0.1:${port}`;
const SCOPES = ['jobs:read', 'jobs:write', 'files:read', 'files:write', 'admin'];

function newKey(type, alg) {
  const options = type === 'rsa' ? { modulusLength: 2048 } : { namedCurve: 'P-256' };
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: randomUUID() };
}

async function readBody(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function sign(ctx, signing) {
  const jwk = signing.find((key) => key.alg === (ctx.query.alg || 'RS256'));
  const header = { alg: jwk.alg, kid: jwk.kid, typ: 'at+jwt' };
  ctx.body = await new SignJWT(await readBody(ctx)).setProtectedHeader(header)
    .sign(await importJWK(jwk, jwk.alg));
}

function keys() {
  let known = existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) : [];
  if (known.length === 0 || process.env.IDP_ROTATE === '1') {
    known = [newKey('rsa', 'RS256'), newKey('ec', 'ES256'), ...known];
  }
  if (process.env.IDP_RETIRE === '1') {
    known = ['RS256', 'ES256'].map((alg) => known.find((key) => key.alg === alg));
  }
  writeFileSync(keysFile, JSON.stringify(known), { mode: 0o600 });
  return known;
}

// A resource server per indicator: hpcgate's (JWT, RS256 or ES256), one for another
// audience (the wrong-audience case), and an opaque one (the introspection case).
const RESOURCES = {
  'urn:hpcgate': { audience: 'hpcgate', accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } },
  'urn:hpcgate:es256': { audience: 'hpcgate', accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } },
  'urn:other': { audience: 'other', accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } },
  'urn:hpcgate:opaque': { audience: 'hpcgate', accessTokenFormat: 'opaque' },
};

const clients = [
  { // a CI pipeline: client credentials
    client_id: 'ci-pipeline', client_secret: 'ci-pipeline-secret',
    grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
    scope: 'jobs:read jobs:write files:read',
  },
  { // the command line: device flow, a public client
    client_id: 'hpcgate-cli', token_endpoint_auth_method: 'none', application_type: 'native',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
    redirect_uris: [], response_types: [],
  },
  { // a native app with a loopback redirect: authorization code + PKCE, a public client
    client_id: 'hpcgate-pkce', token_endpoint_auth_method: 'none', application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token'],
    redirect_uris: ['http://127.0.0.1/callback'], response_types: ['code'],
  },
  { // the gateway's web interface: authorization code + PKCE, a confidential client. Its
    // redirect is the gateway's loopback callback on whichever port the test gateway has
    // (a 'native' client's loopback redirect may name any port, RFC 8252 7.3).
    client_id: 'hpcgate-web', client_secret: 'hpcgate-web-secret', application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/ui/signin/oidc/test/callback'],
  },
  { // the same, but its access tokens live 2 s: the web interface's renewal test
    client_id: 'hpcgate-web-short', client_secret: 'hpcgate-web-secret', application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/ui/signin/oidc/test/callback'],
  },
  { // the gateway itself, for introspection
    client_id: 'hpcgate-gateway', client_secret: 'hpcgate-gateway-secret',
    grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
  },
];

const accounts = new Map(); // sub -> the extra claims of /_test/account
const signingKeys = keys();
const configuration = {
  clients,
  jwks: { keys: signingKeys },
  scopes: ['openid', 'offline_access', ...SCOPES],
  claims: { openid: ['sub'], profile: ['preferred_username'] },
  pkce: { required: () => true },
  ttl: { // an access token lives as its resource server says (600 s but for hpcgate-web-short)
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
    ClientCredentials: 600,
    DeviceCode: 300,
  },
  async findAccount(ctx, sub) {
    return { accountId: sub, claims: async () => ({ sub, preferred_username: sub }) };
  },
  // The user's name in the access token itself; a client-credentials client is named
  // after its client id.
  async extraTokenClaims(ctx, token) {
    const directory = token.accountId ? accounts.get(token.accountId) ?? {} : {};
    return { preferred_username: token.accountId ?? token.clientId, ...directory };
  },
  features: {
    devInteractions: { enabled: true }, // the login and consent pages a test fills in
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf ?? 'urn:hpcgate',
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator, client) => {
        const server = RESOURCES[indicator];
        if (!server) throw new errors.InvalidTarget();
        const ttl = client?.clientId === 'hpcgate-web-short' ? 2 : 600;
        return { scope: SCOPES.join(' '), accessTokenTTL: ttl, ...server };
      },
    },
  },
};

const provider = new Provider(issuer, configuration);
const stats = { jwks: 0, revocations: 0 };
let jwksDown = false;
provider.use(async (ctx, next) => {
  if (ctx.path === '/_test/stats') {
    ctx.body = stats;
    return;
  }
  if (ctx.path === '/_test/jwks' && ctx.method === 'POST') {
    jwksDown = ctx.query.down === '1';
    ctx.body = { down: jwksDown };
    return;
  }
  if (ctx.path === '/_test/account' && ctx.method === 'POST') {
    accounts.set(String(ctx.query.sub), await readBody(ctx));
    ctx.body = { sub: ctx.query.sub };
    return;
  }
  if (ctx.path === '/_test/sign' && ctx.method === 'POST') {
    await sign(ctx, signingKeys);
    return;
  }
  if (ctx.path === '/token/revocation' && ctx.method === 'POST') stats.revocations += 1;
  if (ctx.path === '/jwks') {
    stats.jwks += 1;
    if (jwksDown) {
      ctx.status = 503;
      ctx.body = 'down for the test';
      return;
    }
  }
  await next();
});
provider.listen(port, '127.0.0.1', () => console.log(`issuer ${issuer}`));
