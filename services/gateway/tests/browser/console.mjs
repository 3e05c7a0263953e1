// Drives the gateway's /console in Debian's headless Chromium (playwright-core, no browser download):
// sign in, make a workspace from real photos, run a batch job and follow it live until every image is
// done, compare a pair, approve one and then the rest, read the logs and the account, archive, sign
// out. Any console error, uncaught page error or failed request to the gateway fails the run.
//
// Environment:
//   ATELIER_CONSOLE_URL      the gateway, e.g. http://127.0.0.1:8080 (required)
//   ATELIER_CONSOLE_KEY      an API key (required)
//   ATELIER_CONSOLE_ACCOUNT  the account it acts as (required)
//   ATELIER_CONSOLE_PHOTOS   photo paths separated by ':' (required, at least one)
//   ATELIER_CONSOLE_SKU      the workspace's SKU (default console-<time>)
//   ATELIER_CONSOLE_SCREENS  where screenshots go (default var/console-screens in the repository)
//   ATELIER_CONSOLE_HOLD=1   the model provider holds its answers: once an image shows `processing`,
//                            print the line `console: release the provider` and wait for the job
//                            (the caller releases the provider when it reads that line)
// Exits 0 when every step passed, 1 otherwise.

import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../../../..');
const CHROMIUM = '/usr/bin/chromium';
export const RELEASE_LINE = 'console: release the provider';

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`console test: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const base = need('ATELIER_CONSOLE_URL').replace(/\/+$/, '');
const key = need('ATELIER_CONSOLE_KEY');
const account = need('ATELIER_CONSOLE_ACCOUNT');
const photos = need('ATELIER_CONSOLE_PHOTOS').split(':').filter(Boolean);
const sku = process.env.ATELIER_CONSOLE_SKU || `console-${Date.now()}`;
const screens = path.resolve(process.env.ATELIER_CONSOLE_SCREENS || path.join(REPO, 'var/console-screens'));
const hold = process.env.ATELIER_CONSOLE_HOLD === '1';

if (!existsSync(CHROMIUM)) {
  console.error(`console test: ${CHROMIUM} is missing; run scripts/install-test-deps.sh`);
  process.exit(2);
}
for (const photo of photos) {
  if (!existsSync(photo) || statSync(photo).size === 0) {
    console.error(`console test: photo ${photo} is missing; run scripts/install-test-photos.sh`);
    process.exit(2);
  }
}
mkdirSync(screens, { recursive: true });

const problems = [];
// While a step provokes a failure on purpose, the matching answer and its console line are expected.
let expected = null;

const tid = (id) => `[data-testid="${id}"]`;

function fromGateway(url) {
  return url === base || url.startsWith(`${base}/`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true });
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    watchForProblems(page);
    await run(page);
  } finally {
    await browser.close();
  }
}

function watchForProblems(page) {
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (expected && text.includes(`status of ${expected.status}`)) return;
    problems.push(`console error: ${text}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    if (!fromGateway(req.url())) return;
    const failure = req.failure() ? req.failure().errorText : 'unknown';
    // An image dropped from the page while loading, or the event stream closed by the page itself.
    const pathname = new URL(req.url()).pathname;
    if (failure === 'net::ERR_ABORTED' && (req.resourceType() === 'image' || pathname.endsWith('/events'))) return;
    problems.push(`request failed: ${req.method()} ${req.url()}: ${failure}`);
  });
  page.on('response', (res) => {
    if (!fromGateway(res.url()) || res.status() < 400) return;
    if (expected && res.status() === expected.status && new URL(res.url()).pathname === expected.path) {
      expected.seen = true;
      return;
    }
    problems.push(`HTTP ${res.status()} from ${res.request().method()} ${res.url()}`);
  });
}

let stepNo = 0;
async function step(name, fn) {
  stepNo += 1;
  const started = Date.now();
  try {
    await fn();
  } catch (err) {
    throw new Error(`step ${stepNo} (${name}) failed: ${err.message}`);
  }
  if (problems.length) throw new Error(`step ${stepNo} (${name}): ${problems.join('; ')}`);
  console.log(`ok ${stepNo} - ${name} (${Date.now() - started} ms)`);
}

async function shot(page, name, { top = true } = {}) {
  const file = path.join(screens, `${name}.png`);
  if (top) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: file });
  console.log(`   screenshot ${file}`);
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

async function run(page) {
  const n = photos.length;
  const cards = page.locator(tid('pair-card'));
  const items = page.locator(tid('progress-item'));

  await step('open the console', async () => {
    const response = await page.goto(`${base}/console`);
    expect(response && response.status() === 200, `GET /console answered ${response && response.status()}`);
    const csp = response.headers()['content-security-policy'] || '';
    expect(csp.includes("default-src 'self'"), `no strict Content-Security-Policy: ${csp}`);
    await page.locator(tid('signin-form')).waitFor();
    expect(await page.locator(tid('signin-key')).evaluate((el) => el === document.activeElement), 'the key field has no focus');
  });

  await step('a wrong key is refused in words, with its code', async () => {
    expected = { status: 401, path: '/v1/account', seen: false };
    await page.fill(tid('signin-key'), 'atl_not_a_key');
    await page.fill(tid('signin-account'), account);
    await page.click(tid('signin-submit'));
    const error = page.locator(tid('signin-error'));
    await error.waitFor();
    const text = await error.textContent();
    expect(/error 1001/.test(text) && /HTTP 401/.test(text), `the refusal does not say its code: ${text}`);
    expect(expected.seen, 'no 401 answer was seen');
    expected = null;
  });

  await step('sign in', async () => {
    await page.fill(tid('signin-key'), key);
    await page.fill(tid('signin-account'), account);
    await shot(page, 'signin');
    await page.click(tid('signin-submit'));
    await page.locator(tid('studio')).waitFor();
    const who = await page.textContent(tid('who-account'));
    expect(who.includes(account), `the header shows ${who}`);
    await page.waitForFunction((sel) => /\d+ units/.test(document.querySelector(sel).textContent), tid('who-balance'));
    const stored = await page.evaluate(() => sessionStorage.getItem('atelier.console.account'));
    expect(stored === account, 'the account is not kept in session storage');
  });

  await step(`create workspace ${sku} with ${n} photos`, async () => {
    await page.fill(tid('create-sku'), sku);
    await page.fill(tid('create-name'), 'Console check');
    await page.setInputFiles(tid('create-files'), photos);
    await page.click(tid('create-submit'));
    await page.locator(`${tid('folder-item')}[data-sku="${sku}"]`).waitFor();
    await page.waitForFunction(([sel, count]) => document.querySelectorAll(sel).length === count, [tid('pair-card'), n]);
    const statuses = await cards.evaluateAll((els) => els.map((e) => e.dataset.status));
    expect(statuses.every((s) => s === 'pending'), `new pairs are ${statuses}`);
    const title = await page.textContent(tid('ws-title'));
    expect(title.includes(sku), `the workspace title is ${title}`);
  });

  const group = 'White background';
  await step('save a prompt group and make it active', async () => {
    await page.click(`${tid('group-new')} summary`);
    await page.fill(tid('group-name'), group);
    await page.fill(`${tid('template-row')} ${tid('template-name')}`, 'background');
    await page.fill(`${tid('template-row')} ${tid('template-content')}`, 'Put the subject on a plain white background.');
    await page.click(tid('template-add'));
    await page.locator(tid('template-name')).nth(1).fill('light');
    await page.locator(tid('template-content')).nth(1).fill('Soft, even studio light.');
    await page.click(tid('group-save'));
    await page.waitForFunction(([sel, name]) => {
      const s = document.querySelector(sel);
      return s.selectedOptions.length && s.selectedOptions[0].textContent.includes(name);
    }, [tid('group-select'), group]);
    await page.click(tid('group-activate'));
    await page.waitForFunction(([sel, name]) => document.querySelector(sel).textContent.includes(`Active: ${name}`), [tid('group-active'), group]);
    const templates = await page.locator(`${tid('group-templates')} li`).count();
    expect(templates === 2, `the active group shows ${templates} templates`);
  });

  await step('run a batch job', async () => {
    await page.check(tid('mode-batch'));
    await page.click(tid('run-submit'));
    await page.locator(tid('progress-body')).waitFor();
    await page.waitForFunction(([sel, count]) => document.querySelectorAll(sel).length === count, [tid('progress-item'), n]);
    const names = await items.evaluateAll((els) => els.map((e) => e.dataset.pairId));
    expect(names.every(Boolean), 'a progress row is not tied to its pair');
  });

  if (hold) {
    await step('images show processing while the provider works', async () => {
      await page.locator(`${tid('progress-item')}[data-state="processing"]`).first().waitFor();
      await shot(page, 'progress');
      console.log(RELEASE_LINE);
    });
  }

  await step('every image is done, followed live through the event stream', async () => {
    await page.waitForFunction(([sel, count]) => {
      const els = document.querySelectorAll(sel);
      return els.length === count && Array.from(els).every((e) => e.dataset.state === 'done');
    }, [tid('progress-item'), n], { timeout: 120_000 });
    await page.waitForFunction((sel) => document.querySelector(sel).textContent === 'Finished.', tid('progress-stream'));
    const status = await page.textContent(tid('job-status'));
    expect(status === 'completed', `the job shows ${status}`);
    const labels = await page.locator(tid('progress-item-state')).allTextContents();
    expect(labels.every((l) => l === 'done'), `per-image states: ${labels}`);
    if (!hold) await shot(page, 'progress');
  });

  await step('every pair has its result in the grid', async () => {
    await page.waitForFunction((sel) => {
      const els = document.querySelectorAll(sel);
      return els.length > 0 && Array.from(els).every((e) => e.dataset.status === 'generated');
    }, tid('pair-card'));
    const links = await page.locator(tid('pair-download')).evaluateAll((els) => els.map((a) => ({ href: a.href, download: a.getAttribute('download') })));
    expect(links.length === n, `${links.length} download links for ${n} pairs`);
    for (const link of links) {
      expect(link.download && link.download.includes('_result'), `download name ${link.download}`);
      const answer = await page.request.get(link.href);
      const type = answer.headers()['content-type'] || '';
      expect(answer.status() === 200 && type.startsWith('image/'), `result ${link.href}: ${answer.status()} ${type}`);
    }
    await page.waitForFunction((sel) => Array.from(document.querySelectorAll(sel)).every((img) => img.complete && img.naturalWidth > 0), tid('pair-image'));
    const folderText = await page.textContent(`${tid('folder-item')}[data-sku="${sku}"]`);
    expect(folderText.includes(`${n} generated`), `the workspace list says ${folderText}`);
    await shot(page, 'workspace');
  });

  await step('compare a pair before/after with the keyboard', async () => {
    await cards.first().locator(tid('pair-compare')).click();
    const dialog = page.locator(tid('compare-dialog'));
    await dialog.waitFor();
    await page.waitForFunction(([a, b]) => [a, b].every((s) => {
      const img = document.querySelector(s);
      return img.complete && img.naturalWidth > 0;
    }), [tid('compare-before'), tid('compare-after')]);
    const range = page.locator(tid('compare-range'));
    expect(await range.evaluate((el) => el === document.activeElement), 'the divider has no focus');
    for (let i = 0; i < 15; i += 1) await page.keyboard.press('ArrowLeft');
    expect(await range.inputValue() === '35', `the divider is at ${await range.inputValue()} after 15 ArrowLeft`);
    const clip = await page.locator(tid('compare-after-clip')).evaluate((el) => el.style.clipPath);
    expect(clip.includes('35%'), `the result is clipped at ${clip}`);
    for (let i = 0; i < 5; i += 1) await page.keyboard.press('ArrowRight');
    expect(await range.inputValue() === '40', 'ArrowRight does not move the divider');
    const box = await page.locator(tid('compare-stage')).boundingBox();
    await page.mouse.click(box.x + box.width * 0.5, box.y + box.height / 2);
    const clicked = Number(await range.inputValue());
    expect(Math.abs(clicked - 50) <= 1, `a click at 50% put the divider at ${clicked}`);
    const download = await page.getAttribute(tid('compare-download'), 'download');
    expect(Boolean(download), 'the comparison has no download link');
    await shot(page, 'comparison');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
  });

  await step('approve one pair', async () => {
    const first = cards.first();
    const id = await first.getAttribute('data-pair-id');
    await first.locator(tid('pair-approve')).click();
    await page.locator(`${tid('pair-card')}[data-pair-id="${id}"][data-status="approved"]`).waitFor();
  });

  await step('approve the others together', async () => {
    const pending = page.locator(`${tid('pair-card')}:not([data-status="approved"])`);
    const count = await pending.count();
    expect(count === n - 1, `${count} pairs left to approve`);
    for (let i = 0; i < count; i += 1) await pending.nth(i).locator(tid('pair-select')).check();
    expect((await page.textContent(tid('selection-count'))) === `${count} selected`, 'the selection count is wrong');
    await page.click(tid('approve-selected'));
    await page.waitForFunction((sel) => Array.from(document.querySelectorAll(sel)).every((e) => e.dataset.status === 'approved'), tid('pair-card'));
    await page.waitForFunction((sel) => document.querySelector(sel).textContent === 'approved', tid('ws-status'));
  });

  await step('read the job in the jobs list and its logs', async () => {
    const row = page.locator(tid('job-row')).first();
    await page.waitForFunction((sel) => document.querySelector(sel) && document.querySelector(sel).dataset.status === 'completed', tid('job-row'));
    await row.locator(tid('job-logs')).click();
    await page.locator(tid('log-line')).first().waitFor();
  });

  await step('the account shows its balance, ledger and models', async () => {
    await page.click(tid('nav-account'));
    await page.locator(`${tid('ledger-row')}[data-kind="charge"]`).first().waitFor();
    await page.locator(tid('model-row')).first().waitFor();
    const balance = await page.textContent(tid('fact-balance'));
    expect(/^-?\d+ units$/.test(balance), `balance ${balance}`);
    const charge = await page.locator(`${tid('ledger-row')}[data-kind="charge"] td`).allTextContents();
    expect(charge[0].trim() !== '' && /^-\d+$/.test(charge[2]) && charge[4].trim() !== '', `a charge reads ${charge}`);
    await shot(page, 'account');
    await page.click(tid('nav-studio'));
    await page.locator(tid('workspace-detail')).waitFor();
  });

  await step('archive the workspace', async () => {
    await page.click(tid('ws-archive'));
    await page.waitForFunction((sel) => document.querySelector(sel).textContent === 'archived', tid('ws-status'));
    await page.locator(tid('ws-activate')).waitFor();
    await page.locator(`${tid('folder-item')}[data-sku="${sku}"][data-status="archived"]`).waitFor();
    expect(await page.isDisabled(tid('run-submit')), 'an archived workspace can still be run');
    await shot(page, 'archived');
  });

  await step('sign out', async () => {
    await page.click(tid('signout'));
    await page.locator(tid('signin-form')).waitFor();
    const stored = await page.evaluate(() => sessionStorage.getItem('atelier.console.key'));
    expect(stored === null, 'the key stays in session storage after signing out');
  });

  console.log(`console: every step passed (workspace ${sku}, screenshots in ${screens})`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`console test failed: ${err.message}`);
    process.exit(1);
  },
);
