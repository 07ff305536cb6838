// The web interface in Firefox (Debian's firefox-esr), driven over WebDriver BiDi by
// puppeteer-core (npm; no geckodriver, no browser download): run by tests/webui/test_firefox.py.
// Environment: HPCGATE_UI_NODE_MODULES (where puppeteer-core is), FIREFOX (the executable),
// BASE (a gateway whose [auth.oidc.test] has a web client), TOKEN (a user's token there).
// It signs in through the provider's own pages, then with the token submits a job whose
// output must show while it runs (the job waits for a file this script then creates).
// Prints one JSON object of what it saw; exits 1 with the error otherwise.
const { createRequire } = require('node:module');

const load = createRequire(`${process.env.HPCGATE_UI_NODE_MODULES}/`);
const puppeteer = load('puppeteer-core');
const { BASE, TOKEN, FIREFOX } = process.env;
const TIMEOUT = 60_000;
const seen = {};

async function api(path, init = {}) {
  const headers = { Authorization: `Bearer ${TOKEN}`, ...(init.headers || {}) };
  return fetch(`${BASE}${path}`, { ...init, headers });
}

async function textOf(page, selector) {
  return page.$eval(selector, (element) => element.textContent);
}

async function signInWithTheProvider(browser) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(`${BASE}/ui/signin`);
  await Promise.all([page.waitForNavigation(), page.click('a[href="/ui/signin/oidc/test"]')]);
  await page.type('input[name=login]', 'foxuser');
  await page.type('input[name=password]', 'any');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  await page.click('button[type=submit]'); // the consent page's Continue
  await page.waitForFunction(() => location.pathname === '/ui/dashboard', { timeout: TIMEOUT });
  await page.waitForSelector('.who');
  seen.provider_user = await textOf(page, '.who');
  await context.close();
}

async function aLiveJob(browser) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(`${BASE}/ui/signin`);
  await page.type('#token', TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  seen.token_user = await textOf(page, '.who');
  await page.goto(`${BASE}/ui/jobs/new`);
  const script = '#!/bin/bash\necho first\nfor i in $(seq 600); do [ -e go ] && break; sleep 0.1; done\necho second\n';
  await page.$eval('#j-script', (area, text) => { area.value = text; }, script);
  await page.type('#j-name', 'in-firefox');
  await Promise.all([page.waitForNavigation(), page.click('main button[type=submit]')]);
  const id = page.url().split('/').pop();
  await page.waitForFunction(() => document.querySelector('#job-output').textContent.includes('first'));
  const job = await (await api(`/api/v1/systems/local/jobs/${id}`)).json();
  seen.before_gate = await textOf(page, '#job-output');
  const gate = encodeURIComponent(`${job.working_directory}/go`);
  const put = await api(`/api/v1/systems/local/files/upload?path=${gate}`, { method: 'PUT', body: '' });
  seen.gate_status = put.status;
  await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'COMPLETED');
  await page.waitForFunction(() => document.querySelector('#job-output').textContent === 'first\nsecond\n');
  seen.output = await textOf(page, '#job-output');
  await context.close();
}

(async () => {
  const browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true });
  try {
    seen.browser = await browser.version();
    await signInWithTheProvider(browser);
    await aLiveJob(browser);
    console.log(JSON.stringify(seen));
  } finally {
    await browser.close();
  }
})().catch((error) => {
  console.error(error, JSON.stringify(seen));
  process.exit(1);
});
