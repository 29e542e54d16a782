// An app following changes the way Nango apps do, with Nango's own Node
// client against `terapi serve`: it reads every record and keeps the last
// cursor; Gong changes (one user's title, two users removed, one added); a
// sync runs; from the kept cursor the app gets exactly those four, and
// `modifiedAfter` set to the webhook's own `modifiedAfter` lists what the
// webhook counted. Run in two phases by cli/tests/cli/node.rs, which changes the
// fake Gong between them: PHASE=before, then PHASE=after, sharing STATE_FILE.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { Nango } from '@nangohq/node';
import { env, until, webhookReceiver } from './app.mjs';

const connectionId = env('TERAPI_CONNECTION_ID');
const nango = new Nango({
  host: env('TERAPI_HOST'),
  secretKey: env('TERAPI_SECRET_KEY'),
  webhookSigningKey: env('TERAPI_WEBHOOK_SIGNING_KEY'),
});
const phase = env('PHASE');
const stateFile = env('STATE_FILE');
const record = { providerConfigKey: 'gong', connectionId, model: 'GongUser' };
const received = await webhookReceiver();
// The verified deliveries, parsed.
const webhooks = {
  find: (match) =>
    received.filter((w) => nango.verifyIncomingWebhookRequest(w.body, w.headers)).map((w) => JSON.parse(w.body)).find(match),
};

async function all(query) {
  const out = [];
  let cursor = query.cursor;
  do {
    const page = await nango.listRecords({ ...record, ...query, cursor });
    out.push(...page.records);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

async function usersRun() {
  await nango.triggerSync('gong', ['users'], connectionId);
  return until('the users webhook', () => webhooks.find((w) => w.type === 'sync' && w.syncName === 'users'));
}

if (phase === 'before') {
  test('the app reads every record and keeps the last cursor', async () => {
    await usersRun();
    const records = await all({ limit: 100 });
    assert.equal(records.length, Number(env('GONG_USER_COUNT')));
    fs.writeFileSync(stateFile, JSON.stringify({ cursor: records.at(-1)._nango_metadata.cursor }));
  });
} else {
  test('from the kept cursor: exactly the change, the two deletions and the addition', async () => {
    const { cursor } = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
    const hook = await usersRun();
    assert.deepEqual(hook.responseResults, { added: 1, updated: 1, deleted: 2 });

    const changed = await all({ cursor, limit: 2 });
    const seen = Object.fromEntries(changed.map((r) => [r.id, r._nango_metadata.last_action]));
    assert.deepEqual(seen, {
      [env('CHANGED_ID')]: 'UPDATED',
      [env('ADDED_ID')]: 'ADDED',
      [env('REMOVED_IDS').split(',')[0]]: 'DELETED',
      [env('REMOVED_IDS').split(',')[1]]: 'DELETED',
    });
    assert.equal(changed.find((r) => r.id === env('CHANGED_ID')).title, 'Head of Sales');

    // The webhook's own modifiedAfter lists what it counted.
    const since = await all({ modifiedAfter: hook.modifiedAfter });
    assert.deepEqual(since.map((r) => r.id).sort(), Object.keys(seen).sort());
    assert.match(since[0]._nango_metadata.last_modified_at, /\.\d{3}Z$/);

    // Filters apply before the limit; ids select records.
    const deleted = await nango.listRecords({ ...record, filter: 'deleted', limit: 1 });
    assert.equal(deleted.records.length, 1);
    assert.equal(deleted.records[0]._nango_metadata.last_action, 'DELETED');
    assert.ok(deleted.next_cursor, 'the second deletion is on the next page');
    const picked = await nango.listRecords({ ...record, ids: [env('CHANGED_ID'), env('ADDED_ID'), 'no-such-id'] });
    assert.deepEqual(picked.records.map((r) => r.id).sort(), [env('CHANGED_ID'), env('ADDED_ID')].sort());

    // pruneRecords empties payloads up to a cursor, in batches, and keeps
    // what terapi knows of them.
    const firstTen = (await nango.listRecords({ ...record, limit: 10 })).records;
    const until = firstTen.at(-1)._nango_metadata.cursor;
    assert.deepEqual(await nango.pruneRecords({ ...record, untilCursor: until, limit: 6 }), { count: 6, has_more: true });
    assert.deepEqual(await nango.pruneRecords({ ...record, untilCursor: until, limit: 6 }), { count: 4, has_more: false });
    const pruned = (await nango.listRecords({ ...record, limit: 10 })).records;
    assert.deepEqual(pruned.map((r) => r.id), firstTen.map((r) => r.id));
    assert.ok(pruned.every((r) => r._nango_metadata.pruned_at && r.emailAddress === undefined));

    // Nango's Gong template model `User` reads the same records in its shape.
    const asNango = await nango.listRecords({ ...record, model: 'User', ids: [env('CHANGED_ID')] });
    assert.deepEqual(Object.keys(asNango.records[0]).sort(), ['_nango_metadata', 'email', 'firstName', 'id', 'lastName']);

    // An unknown model is an error in Nango's shape, not an empty list.
    await assert.rejects(nango.listRecords({ ...record, model: 'NoSuchModel' }), (e) => {
      assert.equal(e.response?.status, 404);
      assert.equal(e.response?.data?.error?.code, 'unknown_model');
      return true;
    });
  });
}
