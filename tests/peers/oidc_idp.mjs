// The organisation's OpenID Connect IdP for OpenVisit's tests, on npm oidc-provider 9.
//
// usage: node oidc_idp.mjs [--port N] [--issuer URL] [--clients JSON] [--accounts JSON]
//   env:  OIDC_PORT, OIDC_ISSUER, OIDC_CLIENTS, OIDC_ACCOUNTS (argv wins)
//
// clients: JSON list of {client_id, client_secret, redirect_uris, token_endpoint_auth_method,
//          [post_logout_redirect_uris], [grant_types], [response_types]}
// accounts: optional JSON map login -> extra claims ({"alice": {"email": "a@x", "name": "A"}}).
//          Any login not listed is accepted too (dev interactions accept any login and
//          password) and gets sub=<login>, email=<login>@example.test, name=<login>.
//
// Listens on 127.0.0.1 only; prints "READY oidc_idp <issuer>" once listening.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
    clients: { type: 'string' },
    accounts: { type: 'string' },
  },
});

const port = Number(args.port ?? process.env.OIDC_PORT ?? 9000);
const issuer = (args.issuer ?? process.env.OIDC_ISSUER ?? `http://127.0.0.1:${port}`).replace(/\/$/, '');
const clients = JSON.parse(args.clients ?? process.env.OIDC_CLIENTS ?? '[]').map((c) => ({
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  ...c,
}));
const accounts = JSON.parse(args.accounts ?? process.env.OIDC_ACCOUNTS ?? '{}');

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const configuration = {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  // release scope claims in the id_token as well, not only at userinfo
  conformIdTokenClaims: false,
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  async findAccount(ctx, sub) {
    const extra = accounts[sub] ?? {};
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: sub,
          preferred_username: sub,
          email: `${sub}@example.test`,
          email_verified: true,
          ...extra,
        };
      },
    };
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 600,
    IdToken: 3600,
    Interaction: 3600,
    Grant: 3600,
    Session: 3600,
    RefreshToken: 86400,
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`READY oidc_idp ${issuer}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
