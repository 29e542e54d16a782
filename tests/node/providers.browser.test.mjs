// Two providers of Nango's own providers.yaml (@nangohq/providers 0.71.10)
// that no component serves, connected through the Connect page in headless
// Chromium and proxied through `terapi serve` with Nango's Node client:
//
//   meilisearch (API_KEY): `authorization: Bearer ${apiKey}`, checked with
//     GET /version, base URL `${connectionConfig.instanceUrl}`.
//   auth0-cc (OAUTH2_CC): a JSON token request to
//     https://${connectionConfig.hostname}/oauth/token with
//     grant_type=client_credentials and `audience`, then Bearer tokens.
//
// The fakes below answer as those APIs do (401 to a wrong key or client).
// The Auth0 one speaks TLS with a certificate cli/tests/cli/node.rs made for this
// run, whose CA terapi was told to trust (--ca-cert).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { Nango } from '@nangohq/node';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through cargo test (cli/tests/cli/node.rs)`);
  return value;
};
const nango = new Nango({ host: env('TERAPI_HOST'), secretKey: env('TERAPI_SECRET_KEY') });
const MEILI_KEY = 'meili-key-5f2c';
const CLIENT = { id: 'auth0-client-1', secret: 'auth0-secret-9d1e', audience: 'https://api.example.com/' };

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => resolve(body));
  });
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

const seen = { meili: [], tokens: [], auth0: [] };

const meili = http.createServer((req, res) => {
  seen.meili.push({ url: req.url, authorization: req.headers.authorization });
  if (req.headers.authorization !== `Bearer ${MEILI_KEY}`) {
    return json(res, 401, { message: 'The provided API key is invalid.', code: 'invalid_api_key', type: 'auth' });
  }
  if (req.url === '/version') return json(res, 200, { pkgVersion: '1.9.0', commitSha: 'abc' });
  if (req.url === '/indexes?limit=2') return json(res, 200, { results: [{ uid: 'movies' }, { uid: 'books' }], limit: 2 });
  json(res, 404, { message: `Index not found`, code: 'index_not_found' });
});

let issued = 0;
const auth0 = https.createServer(
  { key: readFileSync(env('TLS_KEY')), cert: readFileSync(env('TLS_CERT')) },
  async (req, res) => {
    if (req.method === 'POST' && req.url === '/oauth/token') {
      const body = JSON.parse((await readBody(req)) || '{}');
      seen.tokens.push({ contentType: req.headers['content-type'], body });
      if (body.grant_type !== 'client_credentials' || body.client_id !== CLIENT.id || body.client_secret !== CLIENT.secret) {
        return json(res, 401, { error: 'access_denied', error_description: 'Unauthorized' });
      }
      issued += 1;
      return json(res, 200, { access_token: `auth0-token-${issued}`, expires_in: 86400, token_type: 'Bearer' });
    }
    seen.auth0.push({ url: req.url, authorization: req.headers.authorization });
    if (!/^Bearer auth0-token-\d+$/.test(req.headers.authorization || '')) {
      return json(res, 401, { statusCode: 401, error: 'Unauthorized', message: 'Invalid token' });
    }
    if (req.url === '/api/v2/users') return json(res, 200, [{ user_id: 'auth0|1', email: 'ada@example.com' }]);
    json(res, 404, { statusCode: 404, error: 'Not Found' });
  },
);

const launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });

/// Submits `form` and waits for the page's verdict: the status text, and
/// whether it was a success.
async function submit(page, provider) {
  await page.evaluate(() => { document.getElementById('status').className = ''; });
  await page.click(`#form-${provider} button[type=submit]`);
  await page.waitForSelector('#status.ok, #status.error');
  return { ok: (await page.getAttribute('#status', 'class')) === 'ok', text: await page.textContent('#status') };
}

const connectionOf = async (provider) =>
  (await nango.listConnections()).connections.filter((c) => c.provider_config_key === provider);

test('an API_KEY and an OAUTH2_CC provider of Nango\'s file: Connect refuses a wrong credential, saves the right one, and the proxy works', async (t) => {
  const meiliPort = await listen(meili);
  const auth0Port = await listen(auth0);
  t.after(() => { meili.close(); auth0.close(); });

  const integrations = (await nango.listIntegrations()).configs.map((c) => c.unique_key);
  assert.ok(integrations.includes('meilisearch') && integrations.includes('auth0-cc'), integrations.join(','));
  // One Connect link makes one connection: one link per provider.
  const link = async (integration) =>
    (await nango.createConnectSession({ end_user: { id: 'end-user-7' }, allowed_integrations: [integration] })).data
      .connect_link;
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(await link('meilisearch'));

    // Meilisearch: the fields come from the entry (`credentials.apiKey`,
    // `connection_config.instanceUrl`).
    await page.fill('#meilisearch-instanceUrl', `http://127.0.0.1:${meiliPort}`);
    await page.fill('#meilisearch-apiKey', 'not-the-key');
    const refused = await submit(page, 'meilisearch');
    assert.equal(refused.ok, false, refused.text);
    assert.match(refused.text, /Meilisearch refused this API key/);
    assert.doesNotMatch(refused.text, /not-the-key/);
    assert.equal((await connectionOf('meilisearch')).length, 0, 'a refused key saves nothing');
    assert.deepEqual(seen.meili.map((r) => r.url), ['/version'], 'checked with the entry\'s verification request');
    await page.fill('#meilisearch-apiKey', MEILI_KEY);
    const saved = await submit(page, 'meilisearch');
    assert.equal(saved.ok, true, saved.text);

    // Auth0 (client credentials): client id and secret are the form's own
    // fields (the entry lists none), hostname and audience the entry's.
    await page.goto(await link('auth0-cc'));
    await page.fill('#auth0-cc-hostname', `127.0.0.1:${auth0Port}`);
    await page.fill('#auth0-cc-audience', CLIENT.audience);
    await page.fill('#auth0-cc-client_id', CLIENT.id);
    await page.fill('#auth0-cc-client_secret', 'wrong-secret');
    const denied = await submit(page, 'auth0-cc');
    assert.equal(denied.ok, false, denied.text);
    assert.match(denied.text, /refused this client id and secret/);
    assert.doesNotMatch(denied.text, /wrong-secret/);
    assert.equal((await connectionOf('auth0-cc')).length, 0, 'a refused client saves nothing');
    await page.fill('#auth0-cc-client_secret', CLIENT.secret);
    const connected = await submit(page, 'auth0-cc');
    assert.equal(connected.ok, true, connected.text);
  } finally {
    await browser.close();
  }

  const [meiliConnection] = await connectionOf('meilisearch');
  const [auth0Connection] = await connectionOf('auth0-cc');
  assert.ok(meiliConnection && auth0Connection);
  const full = await nango.getConnection('meilisearch', meiliConnection.connection_id);
  assert.equal(full.credentials.type, 'API_KEY');
  assert.ok(!JSON.stringify(full).includes(MEILI_KEY), 'the key is never shown');

  // The proxy puts the key where the entry says.
  const indexes = await nango.proxy({
    method: 'GET', endpoint: '/indexes', params: { limit: '2' },
    connectionId: meiliConnection.connection_id, providerConfigKey: 'meilisearch',
  });
  assert.deepEqual(indexes.data.results.map((r) => r.uid), ['movies', 'books']);
  assert.equal(seen.meili.at(-1).authorization, `Bearer ${MEILI_KEY}`);
  // A caller cannot replace the credential header.
  await assert.rejects(
    nango.proxy({
      method: 'GET', endpoint: '/indexes', headers: { authorization: 'Bearer mine' },
      connectionId: meiliConnection.connection_id, providerConfigKey: 'meilisearch',
    }),
    (e) => e.response?.status === 400,
  );

  // Client credentials: one token (got when the connection was checked,
  // or at the first call), reused by the next calls.
  for (let i = 0; i < 3; i++) {
    const users = await nango.get({
      endpoint: '/api/v2/users', connectionId: auth0Connection.connection_id, providerConfigKey: 'auth0-cc',
    });
    assert.equal(users.data[0].email, 'ada@example.com');
  }
  const good = seen.tokens.filter((t) => t.body.client_secret === CLIENT.secret);
  assert.ok(good.length >= 1 && good.length <= 2, `tokens asked for: ${good.length}`);
  assert.equal(good[0].contentType, 'application/json', 'the entry says body_format: json');
  assert.equal(good[0].body.audience, CLIENT.audience, 'token_params filled from the connection config');
  assert.ok(!('organization' in good[0].body), 'an optional param left empty is not sent');
  assert.ok(seen.auth0.every((r) => /^Bearer auth0-token-\d+$/.test(r.authorization)));
});
