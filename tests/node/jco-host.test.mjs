// The Gong component in a second host: transpiled by jco, run by Node, with
// the imports implemented in tests/node/jco-host/host.mjs from HOST.md,
// against the fake Gong. Run by tests/e2e (contract.rs), which starts the
// fake and checks afterwards what Gong saw (rate, credentials).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Host, parseBaseUrl, urlFor, checkHeaders, authorization, Refused } from './jco-host/host.mjs';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value !== undefined, `${name} is set by tests/e2e/tests/e2e/contract.rs`);
  return value;
};
const wasm = await readFile(env('PROVIDER_WASM'));
const conformance = JSON.parse(await readFile(new URL('../../wit/conformance/egress.json', import.meta.url), 'utf8'));
const secret = env('GONG_ACCESS_KEY_SECRET');
const connection = (password) => ({
  baseUrl: env('GONG_BASE_URL'),
  credentials: { type: 'basic', username: env('GONG_ACCESS_KEY'), password },
});
const rateLimit = { per_second: Number(env('GONG_RATE_PER_SECOND')), per_day: Number(env('GONG_RATE_PER_DAY')) };
const host = await Host.load(wasm, { connection: connection(secret), rateLimit });
after(() => host.close());

test('the egress conformance cases hold in this host too', () => {
  const refusal = (run) => {
    try {
      return { value: run() };
    } catch (error) {
      assert.ok(error instanceof Refused, `${error}`);
      return { refused: error.message };
    }
  };
  for (const c of conformance.base_urls) {
    const got = refusal(() => parseBaseUrl(c.given).href);
    if (c.refused !== undefined) assert.ok(got.refused?.includes(c.refused), `${c.given}: ${JSON.stringify(got)}`);
    else assert.equal(got.value, c.base, c.given);
  }
  for (const c of conformance.urls) {
    const got = refusal(() => urlFor(parseBaseUrl(c.base), c.path, c.query ?? []).href);
    if (c.refused !== undefined) assert.ok(got.refused?.includes(c.refused), `${c.path}: ${JSON.stringify(got)}`);
    else assert.equal(got.value, c.url, c.path);
  }
  for (const c of conformance.headers) {
    const got = refusal(() => checkHeaders([[c.name, c.value]]));
    if (c.refused !== undefined) assert.ok(got.refused?.includes(c.refused), `${c.name}: ${JSON.stringify(got)}`);
    else assert.equal(got.value.length, 1, c.name);
  }
  for (const c of conformance.authorization) assert.equal(authorization(c.credentials), c.header);
});

test('it offers the same syncs and actions as in terapi', async () => {
  const syncs = await host.listSyncs();
  assert.deepEqual(syncs.ok.map((s) => s.name).join(','), env('EXPECTED_SYNCS'));
  const actions = await host.listActions();
  assert.deepEqual(actions.ok.map((a) => a.name).join(','), env('EXPECTED_ACTIONS'));
  const described = await host.describe();
  assert.equal(described.ok.basic.usernameTitle, 'Access Key');
});

test('verify accepts the right secret and names a wrong one without echoing it', async () => {
  assert.match((await host.verify()).ok.summary, new RegExp(`${env('GONG_USER_COUNT')} users visible`));
  const wrong = await Host.load(wasm, { connection: connection('not-the-secret'), rateLimit });
  try {
    const refused = await wrong.verify();
    assert.equal(refused.error?.tag, 'unauthorized', JSON.stringify(refused));
    assert.match(refused.error.val, /^Gong rejected the credential \(.*\); check the username and password/);
    assert.ok(!refused.error.val.includes('not-the-secret'));
  } finally {
    await wrong.close();
  }
});

test('a users sync pages through every record at Gong\'s rate', async () => {
  const ids = new Set();
  let checkpoint;
  let pages = 0;
  for (;;) {
    const page = await host.runPage('users', checkpoint);
    assert.ok(page.ok, JSON.stringify(page.error));
    pages += 1;
    for (const record of page.ok.records) {
      assert.equal(JSON.parse(record.json).id, record.id);
      ids.add(record.id);
    }
    if (page.ok.done) break;
    assert.ok(page.ok.nextCheckpoint, 'a page that is not done says where the next starts');
    checkpoint = page.ok.nextCheckpoint;
  }
  assert.equal(ids.size, Number(env('GONG_USER_COUNT')));
  assert.ok(pages > 1, 'the fake pages through records.cursor');
});

test('an incremental sync ends its window at the host\'s clock, and a clock in milliseconds is refused', async () => {
  const before = Math.floor(Date.now() / 1000);
  const page = await host.runPage('calls', undefined);
  assert.ok(page.ok, JSON.stringify(page.error));
  const [, , body] = host.sent.at(-1);
  const to = Date.parse(JSON.parse(body).filter.toDateTime) / 1000;
  assert.ok(to >= before && to <= Math.floor(Date.now() / 1000), `${to} is the host's now`);

  const millis = await host.runPage('calls', undefined, {}, BigInt(Date.now()));
  assert.equal(millis.error?.tag, 'invalid-input');
  assert.match(millis.error.val, /not milliseconds/);
});

test('actions answer Gong\'s objects, and bad input names the field', async () => {
  const user = await host.runAction('get-user', { id: '7000000000000000001' });
  assert.equal(JSON.parse(user.ok).email, 'user1@example.com');
  const bad = await host.runAction('get-user', { id: 'alice@example.com' });
  assert.equal(bad.error?.tag, 'invalid-input');
  assert.match(bad.error.val, /`id`/);
  assert.ok(!bad.error.val.includes('alice'), 'input values are not quoted back');
});

test('the proxy sends what the component shapes, under the same rules', async () => {
  const request = (path, headers = []) => ({ method: 'get', path, query: [], headers, idempotent: true });
  const workspaces = await host.proxy(request('/v2/workspaces'));
  assert.equal(workspaces.ok.status, 200);
  assert.ok(JSON.parse(new TextDecoder().decode(workspaces.ok.body)).workspaces.length > 0);
  const sent = host.sent.length;
  const stolen = await host.proxy(request('/v2/users', [['Authorization', 'Basic Zm9vOmJhcg==']]));
  assert.equal(stolen.error?.tag, 'refused');
  const away = await host.proxy(request('https://attacker.invalid/x'));
  assert.equal(away.error?.tag, 'refused');
  assert.equal(host.sent.length, sent, 'nothing refused left the host');
});

test('nothing the component logged carries the secret', () => {
  assert.ok(host.logs.length > 0, 'the component logs its requests');
  assert.ok(host.logs.every(([, message]) => !message.includes(secret)));
});
