// The SSE example page (examples/sse-eventsource.html) in headless Chromium: a
// browser EventSource with a token watches a live feed that survives a dropped connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { startPortico, token } from './fixture.mjs';
import { launch } from './browser.mjs';
import { proxy } from './proxy.mjs';

const KEY = 'e2e-browser-key';
const PAGE = readFileSync(new URL('../examples/sse-eventsource.html', import.meta.url));
let node, browser, site, relay;

before(async () => {
  node = await startPortico({ plugins: ['feed'], args: ['--api-key', KEY], env: { PORTICO_SSE__RETRY_MS: '50' } });
  browser = await launch();
  // The page comes from another origin, as it would from a real site (CORS applies).
  site = http.createServer((_, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE));
  await new Promise((ok) => site.listen(0, '127.0.0.1', ok));
  relay = await proxy(node.url);
});
after(async () => {
  await browser?.close();
  site?.close();
  await relay?.close();
  await node?.stop();
});

async function post(title) {
  const res = await fetch(`${node.url}/api/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ plugin: 'feed', channel: 'news', event: 'post', data: { title } }),
  });
  assert.equal(res.status, 200);
}

const titles = (page) => page.$$eval('#log div', (lines) => lines
  .map((l) => l.textContent.match(/"title":"([^"]+)"/)?.[1])
  .filter(Boolean)
  .reverse());

test('a browser EventSource watches the feed and catches up after its connection drops', async () => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`http://127.0.0.1:${site.address().port}/`);
  await page.fill('#server', relay.url);
  await page.fill('#token', token({ sub: 'alice' }));
  await page.click('#go');
  await page.waitForSelector('#state:text("open")');

  await post('one');
  await post('two');
  await page.waitForSelector('#log div:has-text("two")');

  // The connection drops and stays down while two posts go out.
  relay.refusing = true;
  relay.cut();
  await page.waitForSelector('#state:text("reconnecting...")');
  await post('three');
  await post('four');
  relay.refusing = false;
  await page.waitForSelector('#log div:has-text("four")');
  await post('five');
  await page.waitForSelector('#log div:has-text("five")');

  assert.deepEqual(await titles(page), ['one', 'two', 'three', 'four', 'five']);
  assert.match(relay.requests.at(-1).toLowerCase(), /last-event-id: \d+-\d+/);
  // A user channel of someone else is refused before any stream starts.
  await page.fill('#channels', 'user:bob');
  await page.click('#go');
  await page.waitForSelector('#state:text("refused")');
});
