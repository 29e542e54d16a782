// Governed tools through `terapi serve`'s /mcp, as an MCP client on the
// official TypeScript SDK sees them. cli/tests/cli/node.rs sets the store up
// (connections acme, globex and stale; toolsets, access profiles, users
// alice and bob) and starts the server; this file is the clients, and runs
// `terapi` itself where an operator would act from another process.
//
// The governance it checks:
//   toolset people = get-user, list-users        toolset calls = get-call-transcripts, upload-call
//   profile sales: people on every connection → alice
//   profile ops:   people and calls on every connection → bob
//   globex: default pending-for-all, upload-call approved
//   stale:  Gong refuses its credential (401) since it was saved

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const host = process.env.TERAPI_HOST;
const tokens = { alice: process.env.ALICE_TOKEN, bob: process.env.BOB_TOKEN };

function terapi(...args) {
    return execFileSync(process.env.TERAPI_BIN, args, {
        env: { ...process.env, TERAPI_DATA_DIR: process.env.TERAPI_DATA_DIR },
        encoding: 'utf8',
    });
}

async function connect(user, connection) {
    const client = new Client({ name: `${user}-client`, version: '1.0.0' });
    const headers = tokens[user] ? { Authorization: `Bearer ${tokens[user]}` } : {};
    const transport = new StreamableHTTPClientTransport(new URL(`${host}/mcp/${connection}`), {
        requestInit: { headers },
    });
    await client.connect(transport);
    return client;
}

async function names(client) {
    return (await client.listTools()).tools.map((t) => t.name).sort();
}

const initialize = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

async function post(path, body, headers = {}) {
    return fetch(`${host}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
        body: JSON.stringify(body),
    });
}

test('no token, or a wrong one, gets 401 and says how to authenticate', async () => {
    const none = await post('/mcp/acme', initialize);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate'), /^Bearer/);
    assert.match((await none.json()).error.message, /terapi mcp user add/);
    const wrong = await post('/mcp/acme', initialize, { Authorization: 'Bearer terapi_mcp_0000' });
    assert.equal(wrong.status, 401);
    // The app's secret key is not a user's token.
    const secret = await post('/mcp/acme', initialize, { Authorization: `Bearer ${process.env.TERAPI_SECRET_KEY}` });
    assert.equal(secret.status, 401);
    await assert.rejects(connect('nobody', 'acme'), (e) => e.code === 401 && /no bearer token/.test(e.message));
});

test('two users with different profiles see different tools on the same connection', async () => {
    const alice = await connect('alice', 'acme');
    const bob = await connect('bob', 'acme');
    assert.deepEqual(await names(alice), ['get-user', 'list-users']);
    // upload-call is in bob's toolset but pending on acme: not listed.
    assert.deepEqual(await names(bob), ['get-call-transcripts', 'get-user', 'list-users']);
    const user = await alice.callTool({ name: 'list-users', arguments: {} });
    assert.ok(!user.isError, JSON.stringify(user));
    assert.ok(user.structuredContent.users.length > 0);
    await alice.close();
    await bob.close();
});

test('a tool outside the user\'s toolsets and an unapproved one in them are refused', async () => {
    const alice = await connect('alice', 'acme');
    await assert.rejects(
        alice.callTool({ name: 'get-call-transcripts', arguments: { callIds: ['1'] } }),
        /not in any toolset your access profiles bind on connection `acme`/,
    );
    const bob = await connect('bob', 'acme');
    await assert.rejects(
        bob.callTool({ name: 'upload-call', arguments: {} }),
        /pending review on connection `acme`/,
    );
    await alice.close();
    await bob.close();
});

test('approving on one connection changes nothing on another; pending-for-all keeps new tools pending', async () => {
    const bobGlobex = await connect('bob', 'globex');
    // globex: everything pending but the one tool approved there.
    assert.deepEqual(await names(bobGlobex), ['upload-call']);
    const aliceGlobex = await connect('alice', 'globex');
    assert.deepEqual(await names(aliceGlobex), []);
    const listed = JSON.parse(terapi('tool', 'list', '--connection', 'globex', '--json'));
    assert.equal(listed.default, 'pending-for-all');
    const status = Object.fromEntries(listed.tools.map((t) => [t.name, t.status]));
    assert.equal(status['get-user'], 'pending', 'a read-only tool nobody decided on is pending under pending-for-all');
    assert.equal(status['upload-call'], 'approved');
    const acme = JSON.parse(terapi('tool', 'list', '--connection', 'acme', '--json'));
    assert.equal(acme.tools.find((t) => t.name === 'upload-call').status, 'pending');
    await bobGlobex.close();
    await aliceGlobex.close();
});

test('tools are listed on a connection whose credential is wrong; the first call says so', async () => {
    const alice = await connect('alice', 'stale');
    assert.deepEqual(await names(alice), ['get-user', 'list-users']);
    const result = await alice.callTool({ name: 'list-users', arguments: {} });
    assert.equal(result.isError, true);
    assert.match(result.content[0].text, /credential|unauthori[sz]ed|401/i);
    await alice.close();
});

test('a session belongs to the user and connection that opened it', async () => {
    const opened = await post('/mcp/acme', initialize, { Authorization: `Bearer ${tokens.alice}` });
    assert.equal(opened.status, 200);
    const session = opened.headers.get('mcp-session-id');
    assert.ok(session);
    await opened.body?.cancel();
    const list = { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} };
    const stolen = await post('/mcp/acme', list, { Authorization: `Bearer ${tokens.bob}`, 'mcp-session-id': session });
    assert.equal(stolen.status, 404);
    // /mcp alone serves a user's only connection; these users reach three.
    const ambiguous = await post('/mcp', initialize, { Authorization: `Bearer ${tokens.alice}` });
    assert.equal(ambiguous.status, 400);
    assert.match((await ambiguous.json()).error.message, /acme, globex, stale/);
});

test('an operator\'s approval in another process reaches a connected client', async () => {
    const bob = await connect('bob', 'acme');
    let heard;
    const changed = new Promise((resolve) => (heard = resolve));
    bob.setNotificationHandler(ToolListChangedNotificationSchema, () => heard());
    assert.ok(!(await names(bob)).includes('upload-call'));
    terapi('tool', 'approve', '--connection', 'acme', 'upload-call');
    await Promise.race([
        changed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('no tools/list_changed in 10 s')), 10_000)),
    ]);
    assert.ok((await names(bob)).includes('upload-call'));
    await bob.close();
});

test('the audit log names the authenticated user of every call, never the input', () => {
    const entries = JSON.parse(terapi('audit', 'list', '--json'));
    const seen = entries.map((e) => `${e.caller} ${e.connection_id} ${e.tool} ${e.status}`);
    for (const wanted of [
        'alice acme list-users ok',
        'alice acme get-call-transcripts refused',
        'bob acme upload-call refused',
        'alice stale list-users error',
    ]) {
        assert.ok(seen.includes(wanted), `${wanted} in ${JSON.stringify(seen)}`);
    }
    const refused = entries.find((e) => e.caller === 'alice' && e.status === 'refused');
    assert.equal(refused.detail, "not in the caller's toolsets");
    assert.ok(entries.every((e) => /^[0-9a-f]{64}$/.test(e.input_sha256)));
    assert.ok(!JSON.stringify(entries).includes('callIds'), 'no input values');
});
