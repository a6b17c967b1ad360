// The web app in a real browser (Debian chromium, driven by playwright-core)
// against a real `dure up`, as a person uses it: by the accessible names of
// fields, buttons and links. Started by tests/browser.rs, which passes:
//   DURE_URL             the gateway, e.g. http://127.0.0.1:8080
//   DURE_ADMIN_PASSWORD  the password of user `admin`
//   DURE_POSTING_PID     posting's process, paused for the degraded board
//   DURE_SCREENSHOTS     (optional) a directory for screenshots
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const base = process.env.DURE_URL;
const adminPassword = process.env.DURE_ADMIN_PASSWORD;
const postingPid = Number(process.env.DURE_POSTING_PID);
const shots = process.env.DURE_SCREENSHOTS;
const PASSWORD = 'correct horse battery';
const LIVE = 10_000;

let browser;

before(async () => {
  assert.ok(base, 'DURE_URL is not set');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
});

after(async () => {
  await browser?.close();
});

async function person() {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  return { context, page: await context.newPage() };
}

async function screenshot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function signUp(page, username) {
  await page.goto(`${base}/signup`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Email').fill(`${username}@example.com`);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.waitForLoadState();
}

async function signIn(page, username, password = PASSWORD) {
  await page.goto(`${base}/signin`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

async function publish(page, title, body) {
  await page.goto(`${base}/postings/new`);
  await page.getByLabel('Title').fill(title);
  await page.getByLabel('Body').fill(body);
  await page.getByRole('button', { name: 'Publish' }).click();
  await page.getByRole('heading', { name: title }).waitFor();
  return page.url();
}

async function comment(page, postingUrl, text) {
  await page.goto(postingUrl);
  await page.getByLabel('Comment', { exact: true }).fill(text);
  await page.getByRole('button', { name: 'Comment' }).click();
  await page.getByText(text).waitFor();
}

test('a new user signs up, signs in, publishes, comments and signs out', async () => {
  const { context, page } = await person();
  await signUp(page, 'ann');
  await signIn(page, 'ann');
  const url = await publish(page, 'Hello from Ann', 'The first posting.');
  assert.match(url, /\/postings\/[0-9a-f-]{36}$/);
  await comment(page, url, 'Ann replies to herself');

  await page.goto(`${base}/`);
  const listed = page.getByRole('link', { name: 'Hello from Ann' }).first();
  await listed.waitFor();
  await listed.click();
  await page.getByText('Ann replies to herself').waitFor();

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('link', { name: /sign in/i }).first().waitFor();
  assert.equal(await page.getByRole('button', { name: 'Sign out' }).count(), 0);
  await context.close();
});

test("another user's comment lights the author's badge without a reload", async () => {
  const ann = await person();
  const bob = await person();
  await signIn(ann.page, 'ann');
  const url = await publish(ann.page, 'Comments welcome', 'Tell me something.');
  await ann.page.goto(`${base}/`);
  const before = await ann.page.getByRole('link', { name: /^Notifications/ }).textContent();
  const count = Number((before.match(/\d+/) || ['0'])[0]);

  await signUp(bob.page, 'bob');
  await signIn(bob.page, 'bob');
  await comment(bob.page, url, 'Bob was here');

  // Ann's page was loaded before the comment existed: only the live
  // stream can change it.
  await ann.page
    .getByRole('link', { name: `Notifications ${count + 1}`, exact: true })
    .waitFor({ timeout: LIVE });
  await screenshot(ann.page, 'web-badge');
  await ann.context.close();
  await bob.context.close();
});

test('a posting full of markup shows as text and runs nothing', async () => {
  const { context, page } = await person();
  await signIn(page, 'ann');
  const payload = '<script>window.__dure_xss = 1</script><img src=x onerror="window.__dure_xss = 2">';
  await page.goto(`${base}/postings/new`);
  await page.getByLabel('Title').fill('Markup <b>test</b>');
  await page.getByLabel('Body').fill(payload);
  await page.getByRole('button', { name: 'Publish' }).click();
  await page.getByRole('heading', { name: 'Markup <b>test</b>' }).waitFor();
  await page.getByText(payload).waitFor();
  assert.equal(await page.evaluate(() => window.__dure_xss), undefined);
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  await context.close();
});

test('a form posted without its CSRF token is refused and changes nothing', async () => {
  const { context, page } = await person();
  await signIn(page, 'ann');
  for (const form of [{ title: 'Forged', body: 'x' }, { title: 'Forged', body: 'x', csrf: 'not-the-token' }]) {
    const answer = await page.request.post(`${base}/postings/new`, { form, maxRedirects: 0 });
    assert.equal(answer.status(), 403);
    assert.match(answer.headers()['content-type'], /text\/html/);
  }
  await page.goto(`${base}/`);
  assert.equal(await page.getByRole('link', { name: 'Forged' }).count(), 0);

  const headers = (await page.request.get(`${base}/`)).headers();
  assert.match(headers['content-security-policy'], /frame-ancestors 'none'/);
  assert.doesNotMatch(headers['content-security-policy'], /unsafe-inline/);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'same-origin');
  await context.close();
});

test('an admin publishes a pinned notice; the board shows it to everyone', async () => {
  const admin = await person();
  await signIn(admin.page, 'admin', adminPassword);
  await admin.page.goto(`${base}/notices/new`);
  await admin.page.getByLabel('Title').fill('House rules');
  await admin.page.getByLabel('Body').fill('Be kind.');
  const pinned = admin.page.getByLabel(/pin/i);
  if (await pinned.count()) await pinned.check();
  await admin.page.getByRole('button', { name: 'Publish' }).click();
  await admin.page.getByRole('heading', { name: 'House rules' }).waitFor();

  const visitor = await person();
  await visitor.page.goto(`${base}/`);
  await visitor.page.getByText('House rules').first().waitFor();
  await screenshot(visitor.page, 'web-board');
  await admin.context.close();
  await visitor.context.close();
});

test('with posting paused the board still shows the notices and says postings are unavailable', async () => {
  assert.ok(postingPid > 0, 'DURE_POSTING_PID is not set');
  const { context, page } = await person();
  process.kill(postingPid, 'SIGSTOP');
  try {
    const started = Date.now();
    const answer = await page.goto(`${base}/`);
    assert.equal(answer.status(), 200);
    await page.getByText(/postings are unavailable/i).waitFor();
    await page.getByText('House rules').first().waitFor();
    assert.ok(Date.now() - started < 5000, `the degraded board took ${Date.now() - started} ms`);
    await screenshot(page, 'web-degraded');
  } finally {
    process.kill(postingPid, 'SIGCONT');
  }
  await context.close();
});
