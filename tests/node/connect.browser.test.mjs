// The Connect page in headless Chromium (Debian's), as an end user fills it:
// a wrong secret shows Gong's refusal on the page and saves nothing; the
// right one shows Connected. Run by cli/tests/cli.rs with TERAPI_HOST,
// TERAPI_SECRET_KEY, GONG_BASE_URL, GONG_ACCESS_KEY, GONG_ACCESS_KEY_SECRET.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Nango } from '@nangohq/node';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through cargo test (cli/tests/cli.rs)`);
  return value;
};
const nango = new Nango({ host: env('TERAPI_HOST'), secretKey: env('TERAPI_SECRET_KEY') });

test('the Connect page saves a connection only when Gong accepts it', async () => {
  const { data } = await nango.createConnectSession({ end_user: { id: 'end-user-1' }, allowed_integrations: ['gong'] });
  const before = (await nango.listConnections()).connections.length;
  // Playwright gives the browser a fresh, empty profile of its own.
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(data.connect_link);
    await page.fill('#gong-username', env('GONG_ACCESS_KEY'));
    await page.fill('#gong-password', 'not-the-secret');
    await page.fill('#gong-api_base_url_for_customer', env('GONG_BASE_URL'));
    await page.click('#form-gong button[type=submit]');
    await page.waitForSelector('#status.error');
    const refusal = await page.textContent('#status');
    assert.match(refusal, /refused this access key and secret/);
    assert.doesNotMatch(refusal, /not-the-secret/);
    assert.equal((await nango.listConnections()).connections.length, before, 'a refused credential saves nothing');

    await page.fill('#gong-password', env('GONG_ACCESS_KEY_SECRET'));
    await page.click('#form-gong button[type=submit]');
    await page.waitForSelector('#status.ok');
    assert.equal(await page.textContent('#status'), 'Connected');
    assert.equal((await nango.listConnections()).connections.length, before + 1);
  } finally {
    await browser.close();
  }
});
