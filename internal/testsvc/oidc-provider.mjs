// A real OpenID Connect provider for tokengate's end-to-end tests:
// oidc-provider (OpenID Certified), configured from the environment.
//
//   OIDC_PROVIDER_MODULE  the installed package's entry (node_modules/oidc-provider/lib/index.js)
//   OIDC_CLIENTS          JSON list of client metadata (redirect_uris, backchannel_logout_uri, ...)
//   OIDC_GROUPS           JSON object: account id -> list of groups (the "groups" claim)
//
// POST /test/account {"id": ..., "groups": [...], "removed": true} changes an
// account while it runs (a group change, a user removed at the provider).
//
// It listens on 127.0.0.1 on a free port and prints {"issuer": "..."} on
// stdout once it is ready. Sign-in goes through the development
// interactions: any login name is accepted (it becomes sub), any password.
import http from 'node:http';

const { default: Provider } = await import(process.env.OIDC_PROVIDER_MODULE);
const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]');
const groups = JSON.parse(process.env.OIDC_GROUPS || '{}');
const removed = new Set();

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients,
  cookies: { keys: ['tokengate-test-cookie-key-not-secret'] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'groups'],
    email: ['email', 'email_verified'],
  },
  // Profile and email claims in the ID token itself, where tokengate reads them.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => true },
  // Refresh tokens without offline_access, as Keycloak issues them.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // The back-channel logout calls go to tokengate on 127.0.0.1, which the
  // provider's SSRF guard refuses by default: allowed here, in a test on
  // loopback only.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  async findAccount(ctx, id) {
    if (removed.has(id)) {
      return undefined; // a refresh for this account is refused (invalid_grant)
    }
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          email: `${id}@example.com`,
          email_verified: true,
          groups: groups[id] || [],
        };
      },
    };
  },
});
provider.on('backchannel.error', (ctx, err, client) => {
  console.error(JSON.stringify({ backchannel_error: String(err && err.message), client: client.clientId }));
});
provider.on('server_error', (ctx, err) => console.error(JSON.stringify({ server_error: String(err && err.stack) })));

// The development pages import a web font from the internet: the tests'
// browser stays on loopback, so the import is dropped.
provider.use(async (ctx, next) => {
  await next();
  if (typeof ctx.body === 'string') {
    ctx.body = ctx.body.replace(/@import url\([^)]*\);?/g, '');
  }
});
const oidc = provider.callback();
server.on('request', (req, res) => {
  if (req.method !== 'POST' || req.url !== '/test/account') {
    oidc(req, res);
    return;
  }
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    const change = JSON.parse(body);
    if (change.groups) groups[change.id] = change.groups;
    if (change.removed) removed.add(change.id);
    res.writeHead(204).end();
  });
});
console.log(JSON.stringify({ issuer }));
