// The operator dashboard in headless Chromium (Debian's), as an operator
// sees it at 1280x800 and on a phone: sign-in with a secret key (a wrong
// one refused, a forged session refused), the connections with their end
// user and health, a failed sync's error, a run's figures. Screenshots of
// both widths go to SCREENSHOT_DIR. Run by cli/tests/cli/node.rs with
// TERAPI_HOST, TERAPI_SECRET_KEY, SCREENSHOT_DIR, RUN_PAGES, RUN_RECORDS,
// FAILED_ERROR.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through cargo test (cli/tests/cli/node.rs)`);
  return value;
};
const host = env('TERAPI_HOST');
const key = env('TERAPI_SECRET_KEY');

const launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });

/// The text of each cell of the row of `table` whose first cells match.
async function rowOf(page, table, ...first) {
  const rows = await page.$$eval(`#${table} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())));
  const row = rows.find((cells) => first.every((text, i) => text === undefined || cells[i] === text));
  assert.ok(row, `no row ${first.join(' / ')} in #${table}: ${JSON.stringify(rows)}`);
  return row;
}

/// Nothing is cut off or needs sideways scrolling at this width.
async function fitsWidth(page, width) {
  const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(scroll <= width, `the page is ${scroll}px wide in a ${width}px viewport`);
}

test('an operator signs in and sees connections, a failed sync and a run', async () => {
  // Who acme is for, as an app tells it.
  const patched = await fetch(`${host}/connections/acme?provider_config_key=gong`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ end_user: { id: 'u-ada', display_name: 'Ada Lovelace', email: 'ada@acme.test' } }),
  });
  assert.equal(patched.status, 200, await patched.text());

  const browser = await launch();
  try {
    const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await desktop.newPage();
    await page.goto(`${host}/`);
    assert.equal(new URL(page.url()).pathname, '/dashboard/login', 'signed out, the dashboard asks for a key');

    await page.fill('#secret_key', 'terapi_sk_not-a-key-of-this-store');
    await page.click('button[type=submit]');
    const refusal = await page.textContent('#login-error');
    assert.match(refusal, /not valid here/);
    assert.doesNotMatch(await page.content(), /not-a-key-of-this-store/, 'what was typed is never echoed');

    await page.fill('#secret_key', key);
    await page.click('button[type=submit]');
    await page.waitForSelector('#connections-table');
    assert.equal(new URL(page.url()).pathname, '/dashboard');

    // The browser keeps a signed session, never the key.
    const [cookie] = await desktop.cookies();
    assert.equal(cookie.name, 'terapi_operator');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.ok(!cookie.value.includes(key.slice('terapi_sk_'.length, 30)), 'the cookie holds no part of the key');

    const acme = await rowOf(page, 'connections-table', 'acme');
    assert.equal(acme[1], 'gong');
    assert.match(acme[2], /Ada Lovelace/);
    assert.match(acme[2], /ada@acme\.test/);
    assert.match(acme[3], /^ok/);
    const globex = await rowOf(page, 'connections-table', 'globex');
    assert.match(globex[3], /failing: users/);

    const failed = await rowOf(page, 'syncs-table', 'globex');
    assert.match(failed[2], /failed/);
    assert.ok(failed[6].includes(env('FAILED_ERROR')), `the failed sync's error is shown: ${failed[6]}`);
    const done = await rowOf(page, 'syncs-table', 'acme');
    assert.match(done[2], /done/);
    assert.equal(done[5], env('RUN_RECORDS'));

    const run = await rowOf(page, 'runs-table', undefined, 'acme', 'users', 'done');
    assert.equal(run[4], env('RUN_PAGES'), 'pages');
    assert.equal(run[5], env('RUN_RECORDS'), 'records');
    assert.match(run[6], /\d+(\.\d)? (ms|s)$/, 'duration');
    assert.equal(await page.textContent('#tile-failing'), '1');

    await fitsWidth(page, 1280);
    assert.ok(await page.isVisible('#runs-table thead'), 'a wide screen shows tables');
    await page.screenshot({ path: `${env('SCREENSHOT_DIR')}/dashboard-1280x800.png`, fullPage: true });

    // A phone, signed in with the same session.
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      isMobile: true,
      hasTouch: true,
      deviceScaleFactor: 2,
      storageState: await desktop.storageState(),
    });
    const small = await phone.newPage();
    await small.goto(`${host}/dashboard`);
    await small.waitForSelector('#connections-table');
    await fitsWidth(small, 390);
    assert.equal(await small.isVisible('#runs-table thead'), false, 'a phone shows rows as cards');
    const label = await small.$eval('#syncs-table td[data-label="Last error"]', (td) =>
      getComputedStyle(td, '::before').content);
    assert.equal(label, '"Last error"', 'each value is labelled on a phone');
    const failedOnPhone = await rowOf(small, 'syncs-table', 'globex');
    assert.ok(failedOnPhone[6].includes(env('FAILED_ERROR')));
    await small.screenshot({ path: `${env('SCREENSHOT_DIR')}/dashboard-390x844.png`, fullPage: true });
    await phone.close();

    // A forged session (another signature) is not one.
    const forged = await browser.newContext();
    await forged.addCookies([{ ...cookie, value: cookie.value.replace(/.$/, (c) => (c === '0' ? '1' : '0')) }]);
    const forgedPage = await forged.newPage();
    await forgedPage.goto(`${host}/dashboard`);
    assert.equal(new URL(forgedPage.url()).pathname, '/dashboard/login');
    await forged.close();

    // Signing out ends it.
    await page.click('text=Sign out');
    await page.waitForSelector('#secret_key');
    await page.goto(`${host}/dashboard`);
    assert.equal(new URL(page.url()).pathname, '/dashboard/login');
  } finally {
    await browser.close();
  }
});
