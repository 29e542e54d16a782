// The Connect page in headless Chromium (Debian's), as an end user fills it:
// a wrong secret shows Gong's refusal on the page and saves nothing; the
// right one shows Connected. The page names the app asking, the provider
// (logo, what will be read, where to find the key), and fits a laptop
// (1280x800) and a phone (390x844), screenshots of both going to
// SCREENSHOT_DIR. Run by cli/tests/cli/node.rs with TERAPI_HOST,
// TERAPI_SECRET_KEY, GONG_BASE_URL, GONG_ACCESS_KEY, GONG_ACCESS_KEY_SECRET,
// APP_NAME, DOCS_CONNECT, SCREENSHOT_DIR.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Nango } from '@nangohq/node';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through cargo test (cli/tests/cli/node.rs)`);
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
    // What an end user sees first, at both widths.
    for (const [width, height] of [[1280, 800], [390, 844]]) {
      const context = await browser.newContext({ viewport: { width, height }, isMobile: width < 500, deviceScaleFactor: 1 });
      const look = await context.newPage();
      await look.goto(data.connect_link);
      assert.equal(await look.textContent('#heading'), `${env('APP_NAME')} wants to connect to your Gong account`);
      assert.equal(await look.title(), `Connect · ${env('APP_NAME')}`);
      assert.match(await look.textContent('.access'), new RegExp(`^${env('APP_NAME')} will read your Gong data: users, calls, `));
      assert.equal(await look.getAttribute('#docs-gong', 'href'), env('DOCS_CONNECT'));
      assert.equal(await look.textContent('#docs-gong'), 'Where do I find my access key?');
      assert.equal((await look.textContent('.logo')).trim(), 'G');
      assert.equal(await look.textContent('#form-gong button[type=submit]'), 'Connect');
      // Placeholders are hints, not answers: lighter than the labels.
      const weights = await look.$eval('#gong-api_base_url_for_customer', (input) =>
        [getComputedStyle(input).fontWeight, getComputedStyle(input, '::placeholder').fontWeight]);
      assert.deepEqual(weights, ['400', '400']);
      const scroll = await look.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scroll <= width, `the page is ${scroll}px wide in a ${width}px viewport`);
      const card = await look.$eval('main', (main) => main.getBoundingClientRect().width);
      if (width < 500) assert.equal(Math.round(card), width, 'on a phone the form takes the whole width');
      else assert.ok(card <= 520 && card < width / 2, `on a laptop the form is a card (${card}px)`);
      await look.screenshot({ path: `${env('SCREENSHOT_DIR')}/connect-${width}x${height}.png`, fullPage: true });
      await context.close();
    }

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
