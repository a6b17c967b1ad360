// The operator console of `dure up` in a real browser: every process shown
// running, a process killed with its button and seen coming back, the logs
// page. Started by tests/browser.rs, which passes:
//   DURE_CONSOLE      the console, e.g. http://127.0.0.1:8090
//   DURE_SCREENSHOTS  (optional) a directory for screenshots
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const console_ = process.env.DURE_CONSOLE;
const shots = process.env.DURE_SCREENSHOTS;
const SERVICES = ['registry', 'identity', 'posting', 'notice', 'notification', 'reporting', 'web', 'gateway'];

let browser;

before(async () => {
  assert.ok(console_, 'DURE_CONSOLE is not set');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
});

after(async () => {
  await browser?.close();
});

async function screenshot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

function cell(page, instance, field) {
  return page.locator(`tr[data-instance="${instance}"] [data-field="${field}"]`);
}

test('the console shows every process running, and one killed comes back', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 700 } });
  await page.goto(`${console_}/`);
  await page.getByRole('heading', { name: 'Resources' }).waitFor();
  for (const service of SERVICES) {
    assert.equal(await cell(page, service, 'state').textContent(), 'running', service);
    assert.equal(await cell(page, service, 'ready').textContent(), 'ready', service);
  }
  await screenshot(page, 'console-resources');

  const pid = await cell(page, 'notice', 'pid').textContent();
  await page.getByRole('button', { name: 'kill notice' }).click();
  await page.waitForURL(`${console_}/`);
  // The table is kept live by the console's script: no reload below.
  await page.waitForFunction(
    ([before]) => {
      const row = document.querySelector('tr[data-instance="notice"]');
      return row.querySelector('[data-field="restarts"]').textContent === '1'
        && row.querySelector('[data-field="state"]').textContent === 'running'
        && row.querySelector('[data-field="pid"]').textContent !== before;
    },
    [pid],
    { timeout: 20_000 },
  );
  await page.close();
});

test('the logs page finds lines by text', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 700 } });
  await page.goto(`${console_}/logs`);
  await page.getByLabel('Text').fill('ready');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('cell', { name: 'posting ready' }).first().waitFor();
  await screenshot(page, 'console-logs');
  await page.close();
});

async function api(path, { method = 'GET', token, body, requestId } = {}) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (requestId) headers['x-request-id'] = requestId;
  const answer = await fetch(`${process.env.DURE_URL}${path}`, {
    method,
    headers,
    body: body && JSON.stringify(body),
  });
  assert.ok(answer.ok, `${method} ${path}: ${answer.status}`);
  return answer.status === 204 ? null : answer.json();
}

async function signedUp(username) {
  const password = 'console trace password';
  await api('/api/users', { method: 'POST', body: { username, email: `${username}@example.com`, password } });
  return (await api('/api/login', { method: 'POST', body: { username, password } })).access_token;
}

test("a comment's trace is drawn across gateway, posting and notification", async () => {
  const carol = await signedUp('carol');
  const dave = await signedUp('dave');
  const posting = await api('/api/postings', { method: 'POST', token: carol, body: { title: 'Traced', body: 'b' } });
  const requestId = 'console-browser-trace';
  await api(`/api/postings/${posting.id}/comments`, { method: 'POST', token: dave, body: { body: 'Hi' }, requestId });

  const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
  // The consumer's span arrives with notification's next export.
  const deadline = Date.now() + 20_000;
  for (;;) {
    await page.goto(`${console_}/traces?request_id=${requestId}`);
    const link = page.getByRole('link', { name: 'POST /api/postings' }).first();
    if (await link.count()) {
      await link.click();
      const waterfall = page.getByRole('img', { name: /^Waterfall of trace/ });
      await waterfall.waitFor();
      if (await page.getByRole('cell', { name: /notification: consume/ }).count()) break;
    }
    assert.ok(Date.now() < deadline, 'no trace of the comment reaching notification');
    await page.waitForTimeout(500);
  }
  await screenshot(page, 'console-trace');
  await page.close();
});

test('metrics, events and the topology show the traffic', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
  const deadline = Date.now() + 15_000;
  for (;;) {
    await page.goto(`${console_}/metrics`);
    if (await page.getByRole('cell', { name: '/api/postings/{id}/comments' }).count()) break;
    assert.ok(Date.now() < deadline, 'no route figures for comments');
    await page.waitForTimeout(500);
  }
  await page.getByRole('img', { name: 'Requests per second of gateway' }).waitFor();
  await screenshot(page, 'console-metrics');

  await page.goto(`${console_}/events`);
  await page.getByRole('heading', { name: 'Consumers' }).waitFor();
  assert.ok(await page.locator('#consumers tbody tr').count() > 0, 'no consumers listed');
  assert.ok(await page.locator('#producers tbody tr').count() > 0, 'no producers listed');
  await screenshot(page, 'console-events');

  await page.goto(`${console_}/topology`);
  await page.getByRole('img', { name: 'Topology of the services' }).waitFor();
  assert.ok(await page.getByRole('cell', { name: 'event' }).count() > 0, 'no event flow seen');
  await screenshot(page, 'console-topology');
  await page.close();
});
