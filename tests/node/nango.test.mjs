// An app written against Nango, with Nango's own Node client, pointed at
// `terapi serve` by changing only `host`. cli/tests/cli/node.rs starts the fake
// Gong, the server (with a saved connection) and this file, and passes:
//   TERAPI_HOST, TERAPI_SECRET_KEY, TERAPI_CONNECTION_ID, TERAPI_WEBHOOK_PORT,
//   TERAPI_WEBHOOK_SIGNING_KEY, GONG_USER_COUNT
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Nango } from '@nangohq/node';
import { env, until, webhookReceiver } from './app.mjs';

const host = env('TERAPI_HOST');
const connectionId = env('TERAPI_CONNECTION_ID');
const users = Number(env('GONG_USER_COUNT'));
const nango = new Nango({ host, secretKey: env('TERAPI_SECRET_KEY'), webhookSigningKey: env('TERAPI_WEBHOOK_SIGNING_KEY') });
const webhooks = await webhookReceiver();

test('getConnection shows the connection and no secret', async () => {
  const connection = await nango.getConnection('gong', connectionId);
  assert.equal(connection.connection_id, connectionId);
  assert.equal(connection.provider_config_key, 'gong');
  assert.equal(connection.credentials.type, 'BASIC');
  assert.equal(connection.credentials.password, undefined);
  // Shapes as @nangohq/types has them.
  assert.equal(typeof connection.id, 'number');
  assert.ok(Number.isSafeInteger(connection.id));
  assert.deepEqual(connection.tags, {});
  assert.equal(connection.end_user, null);
  const { connections } = await nango.listConnections();
  assert.equal(connections.find((c) => c.connection_id === connectionId).id, connection.id);
});

test('triggerSync, syncStatus, listRecords, and a webhook verifyIncomingWebhookRequest accepts', async () => {
  // Never run, never started: stopped, with no last execution.
  const { syncs: [never] } = await nango.syncStatus('gong', ['users'], connectionId);
  assert.equal(never.status, 'STOPPED');
  assert.equal(never.latestExecutionStatus, undefined);
  await nango.startSync('gong', ['users'], connectionId);
  await nango.triggerSync('gong', ['users'], connectionId);
  const status = await until('the users sync', async () => {
    const { syncs } = await nango.syncStatus('gong', ['users'], connectionId);
    return syncs[0].latestExecutionStatus === 'SUCCESS' && syncs[0];
  });
  assert.equal(status.recordCount.GongUser, users);

  const seen = new Set();
  let cursor;
  do {
    const page = await nango.listRecords({ providerConfigKey: 'gong', connectionId, model: 'GongUser', limit: 100, cursor });
    for (const record of page.records) {
      assert.equal(record._nango_metadata.last_action, 'ADDED');
      seen.add(record.id);
    }
    cursor = page.next_cursor;
  } while (cursor);
  assert.equal(seen.size, users);

  const hook = await until('the users webhook', () => webhooks.find((w) => JSON.parse(w.body).syncName === 'users'));
  assert.equal(nango.verifyIncomingWebhookRequest(hook.body, hook.headers), true);
  assert.equal(nango.verifyIncomingWebhookRequest(hook.body.replace('"users"', '"Users"'), hook.headers), false);
  const body = JSON.parse(hook.body);
  assert.equal(body.connectionId, connectionId);
  assert.deepEqual(body.responseResults, { added: users, updated: 0, deleted: 0 });

  const { frequency } = await nango.updateSyncConnectionFrequency('gong', 'users', connectionId, 'every 2h');
  assert.equal(frequency, 'every 2h');
});

test('the auth webhook of the saved connection arrives signed, in Nango\'s shape', async () => {
  const hook = await until('the auth webhook', () =>
    webhooks.find((w) => nango.verifyIncomingWebhookRequest(w.body, w.headers) && JSON.parse(w.body).type === 'auth'),
  );
  const body = JSON.parse(hook.body);
  assert.deepEqual(
    [body.from, body.connectionId, body.providerConfigKey, body.provider, body.authMode, body.operation, body.success],
    ['nango', connectionId, 'gong', 'gong', 'BASIC', 'creation', true],
  );
  assert.ok(hook.headers['x-terapi-event-id'].startsWith('evt_'));
});

test('shapes as @nangohq/types 0.71.10 has them', async () => {
  const keys = (o) => Object.keys(o).sort();
  const full = await nango.getConnection('gong', connectionId);
  assert.deepEqual(keys(full), [
    'connection_config', 'connection_id', 'created_at', 'credentials', 'end_user', 'errors', 'id', 'last_fetched_at',
    'metadata', 'provider', 'provider_config_key', 'tags', 'updated_at', 'webhook_url_override',
  ]);
  const { connections } = await nango.listConnections();
  assert.deepEqual(keys(connections[0]), [
    'connection_id', 'created', 'end_user', 'errors', 'id', 'metadata', 'provider', 'provider_config_key', 'tags',
  ]);
  const { syncs: [status] } = await nango.syncStatus('gong', ['users'], connectionId);
  for (const key of ['type', 'status', 'frequency', 'finishedAt', 'nextScheduledSyncAt', 'latestExecutionStatus', 'recordCount', 'checkpoint']) {
    assert.ok(key in status, `syncStatus has ${key}`);
  }
  assert.ok(['RUNNING', 'PAUSED', 'STOPPED', 'SUCCESS', 'ERROR'].includes(status.status));
  const page = await nango.listRecords({ providerConfigKey: 'gong', connectionId, model: 'GongUser', limit: 1 });
  assert.deepEqual(keys(page.records[0]._nango_metadata), [
    'cursor', 'deleted_at', 'first_seen_at', 'last_action', 'last_modified_at', 'pruned_at',
  ]);
  assert.equal(typeof page.records[0].id, 'string');
  const { data: integration } = await nango.getIntegration({ uniqueKey: 'gong' });
  assert.deepEqual(keys(integration), ['created_at', 'display_name', 'forward_webhooks', 'logo', 'provider', 'unique_key', 'updated_at']);
});

test('triggerAction and proxy reach Gong through the component and the host', async () => {
  const page = await nango.listRecords({ providerConfigKey: 'gong', connectionId, model: 'GongUser', limit: 1 });
  const id = page.records[0].id;
  const user = await nango.triggerAction('gong', connectionId, 'get-user', { id });
  assert.equal(user.id, id);

  // The same action asynchronously: an id at once, the result from the store.
  const started = await nango.triggerActionAsync('gong', connectionId, 'get-user', { id });
  assert.match(started.id, /^act_/);
  assert.equal(started.statusUrl, `/action/${started.id}`);
  const result = await until('the async action', async () => {
    try {
      return await nango.getAsyncActionResult({ id: started.id });
    } catch (e) {
      if (e.response?.status === 404) return null;
      throw e;
    }
  });
  assert.deepEqual(result, user);
  const done = await until('the async_action webhook', () =>
    webhooks.map((w) => JSON.parse(w.body)).find((w) => w.type === 'async_action' && w.payload.id === started.id),
  );
  assert.equal(done.payload.statusUrl, started.statusUrl);
  await assert.rejects(nango.getAsyncActionResult({ id: 'act_nope' }), (e) => e.response?.status === 404);

  const response = await nango.proxy({ method: 'GET', endpoint: '/v2/users', providerConfigKey: 'gong', connectionId });
  assert.equal(response.status, 200);
  assert.ok(Array.isArray(response.data.users));

  await assert.rejects(
    nango.proxy({ method: 'GET', endpoint: '/v2/users', providerConfigKey: 'gong', connectionId, baseUrlOverride: 'https://elsewhere.example' }),
    (e) => e.response?.status === 400 && e.response.data.error.code === 'base_url_override_refused'
  );
});

test('end users, tags and metadata: patchConnection, listConnections filters, setMetadata, updateMetadata, getMetadata', async () => {
  const before = await nango.getConnection('gong', connectionId);
  assert.equal(before.end_user, null);
  assert.equal(before.metadata, null);

  await nango.patchConnection(
    { connectionId, provider_config_key: 'gong' },
    { end_user: { id: 'u-42', email: 'ada@example.com', display_name: 'Ada' }, tags: { plan: 'pro' } },
  );
  const patched = await nango.getConnection('gong', connectionId);
  assert.deepEqual(patched.end_user, { id: 'u-42', display_name: 'Ada', email: 'ada@example.com', tags: null, organization: null });
  assert.equal(patched.tags.plan, 'pro');
  assert.equal(patched.tags.end_user_email, 'ada@example.com');

  const mine = await nango.listConnections({ userId: 'u-42' });
  assert.deepEqual(mine.connections.map((c) => c.connection_id), [connectionId]);
  assert.deepEqual(mine.connections[0].end_user.id, 'u-42');
  const others = await nango.listConnections({ userId: 'someone-else' });
  assert.equal(others.connections.length, 0);
  const tagged = await nango.listConnections({ tags: { plan: 'pro', email: 'ada@example.com' } });
  assert.equal(tagged.connections.length, 1);
  assert.equal((await nango.listConnections({ tags: { plan: 'free' } })).connections.length, 0);

  await nango.setMetadata('gong', connectionId, { region: 'eu', seats: 5 });
  assert.deepEqual(await nango.getMetadata('gong', connectionId), { region: 'eu', seats: 5 });
  await nango.updateMetadata('gong', connectionId, { seats: 7 });
  assert.deepEqual(await nango.getMetadata('gong', connectionId), { region: 'eu', seats: 7 });
  await nango.setMetadata('gong', connectionId, { fresh: true });
  assert.deepEqual(await nango.getMetadata('gong', connectionId), { fresh: true });
  await assert.rejects(nango.setMetadata('gong', 'no-such-connection', { a: 1 }), (e) => e.response?.status === 404);
});

test('getIntegration and getScriptsConfig describe what the Gong component serves', async () => {
  const { data } = await nango.getIntegration({ uniqueKey: 'gong' });
  assert.equal(data.unique_key, 'gong');
  assert.equal(data.provider, 'gong');
  assert.equal(typeof data.logo, 'string');
  assert.ok(!Number.isNaN(Date.parse(data.created_at)));
  const configs = await nango.getScriptsConfig();
  const gong = configs.find((c) => c.providerConfigKey === 'gong');
  const sync = gong.syncs.find((s) => s.name === 'users');
  assert.deepEqual([sync.type, sync.returns, sync.runs, sync.track_deletes], ['sync', ['GongUser'], 'every 1d', true]);
  assert.ok(gong.actions.some((a) => a.name === 'get-user' && a.type === 'action'));
  await assert.rejects(nango.getIntegration({ uniqueKey: 'no-such-integration' }), (e) => {
    assert.equal(e.response?.status, 404);
    assert.equal(e.response?.data?.error?.code, 'unknown_provider_config');
    return true;
  });
});

test('listProviders, getProvider, listFunctions and getFunction answer in @nangohq/types shapes', async () => {
  const { data: found } = await nango.listProviders({ search: 'GONG' });
  assert.deepEqual(found.map((p) => p.name).sort(), ['gong', 'gong-oauth']);
  const { data: none } = await nango.listProviders({ search: 'no-such-provider' });
  assert.deepEqual(none, [], 'search narrows the list');
  const { data: gong } = await nango.getProvider({ provider: 'gong-oauth' });
  assert.equal(typeof gong.logo_url, 'string');
  assert.match(gong.logo_url, /gong\.svg$/);
  assert.equal(typeof gong.authorization_url, 'string');
  const { data: basic } = await nango.getProvider({ provider: 'gong' });
  // A field providers.yaml leaves out is absent, never null.
  for (const key of ['authorization_url', 'token_url', 'docs_connect']) {
    assert.ok(basic[key] === undefined || typeof basic[key] === 'string', `${key}: ${basic[key]}`);
  }
  for (const field of Object.values(basic.credentials ?? {}).concat(Object.values(basic.connection_config ?? {}))) {
    assert.ok(Object.values(field).every((v) => v !== null), JSON.stringify(field));
  }

  const functions = await nango.listFunctions({ uniqueKey: 'gong' });
  assert.ok(functions.data.some((f) => f.type === 'sync' && f.name === 'users' && f.returns[0] === 'GongUser'));
  assert.ok(functions.data.some((f) => f.type === 'action' && f.name === 'get-user'));
  assert.equal(functions.pagination.total, functions.data.length);
  const syncs = await nango.listFunctions({ uniqueKey: 'gong' }, { type: 'sync', limit: 2, page: 1 });
  assert.equal(syncs.data.length, 2);
  assert.ok(syncs.data.every((f) => f.type === 'sync' && f.enabled === true && typeof f.last_deployed === 'string'));
  const { data: one } = await nango.getFunction({ uniqueKey: 'gong', name: 'get-user' }, { type: 'action' });
  assert.equal(one.name, 'get-user');
  assert.equal(one.json_schema.input.required[0], 'id');
  await assert.rejects(nango.getFunction({ uniqueKey: 'gong', name: 'no-such' }), (e) => e.response?.status === 404);
});

test('createReconnectSession hands out a Connect link for an existing connection', async () => {
  const { data } = await nango.createReconnectSession({ connection_id: connectionId, integration_id: 'gong' });
  assert.match(data.token, /^nango_connect_session_/);
  assert.ok(data.connect_link.includes(data.token));
  await assert.rejects(
    nango.createReconnectSession({ connection_id: 'no-such-connection', integration_id: 'gong' }),
    (e) => e.response?.status === 404 && e.response.data.error.code === 'unknown_connection',
  );
});

test('createConnectSession tags and organization reach the connection and its auth webhook', async () => {
  const { data } = await nango.createConnectSession({
    end_user: { id: 'u-7', email: 'grace@example.com' },
    organization: { id: 'org-1', display_name: 'Acme Corp' },
    tags: { plan: 'enterprise', region: 'eu' },
    allowed_integrations: ['gong'],
  });
  // What the Connect page's Save sends.
  const saved = await fetch(`${host}/connect/api/connections`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      session_token: data.token,
      provider: 'gong',
      credentials: { username: env('GONG_ACCESS_KEY'), password: env('GONG_ACCESS_KEY_SECRET') },
      connection_config: { api_base_url_for_customer: env('GONG_BASE_URL') },
    }),
  });
  assert.equal(saved.status, 200);
  const made = (await saved.json()).connection_id;
  const { connections } = await nango.listConnections({ tags: { plan: 'enterprise' } });
  assert.deepEqual(connections.map((c) => c.connection_id), [made]);
  const connection = await nango.getConnection('gong', made);
  assert.equal(connection.tags.region, 'eu');
  assert.equal(connection.tags.organization_id, 'org-1');
  assert.equal(connection.tags.organization_display_name, 'Acme Corp');
  assert.equal(connection.tags.end_user_id, 'u-7');
  assert.deepEqual(connection.end_user.organization, { id: 'org-1', display_name: 'Acme Corp' });
  const hook = await until('the new connection\'s auth webhook', () =>
    webhooks.find((w) => JSON.parse(w.body).type === 'auth' && JSON.parse(w.body).connectionId === made),
  );
  const body = JSON.parse(hook.body);
  assert.ok(nango.verifyIncomingWebhookRequest(hook.body, hook.headers));
  assert.equal(body.tags.plan, 'enterprise');
  assert.equal(body.tags.organization_id, 'org-1');
  assert.equal(body.endUser.endUserId, 'u-7');
  assert.equal(body.endUser.organizationId, 'org-1');
  await nango.deleteConnection('gong', made);
});

test('deleteConnection removes it', async () => {
  await nango.deleteConnection('gong', connectionId);
  await assert.rejects(nango.getConnection('gong', connectionId), (e) => e.response?.status === 404 && e.response.data.error.code === 'unknown_connection');
});
