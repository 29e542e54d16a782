// What the Node tests share: their settings from the environment (set by
// cli/tests/cli/node.rs), waiting for a condition, and the app's webhook endpoint.
import http from 'node:http';
import { after } from 'node:test';

export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through cargo test (cli/tests/cli/node.rs)`);
  return value;
};

export async function until(what, check, seconds = 60) {
  for (let i = 0; i < seconds * 10; i++) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/// The app's webhook endpoint on TERAPI_WEBHOOK_PORT: every delivery's raw
/// body and headers (verification needs the raw body), in arrival order.
export async function webhookReceiver() {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers });
      res.end('ok');
    });
  });
  await new Promise((resolve) => server.listen(Number(env('TERAPI_WEBHOOK_PORT')), '127.0.0.1', resolve));
  after(() => server.close());
  return received;
}
