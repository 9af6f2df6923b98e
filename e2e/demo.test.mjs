// The demo page in a real browser: two people chat with each other, a post
// reaches the live feed (Socket.IO in, SSE out), and the admin view lists the
// plugins with counters that move.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { ADMIN_TOKEN, startPortico } from './fixture.mjs';
import { launch } from './browser.mjs';

let node, browser;
before(async () => {
  node = await startPortico({ plugins: ['chat', 'echo', 'feed'], args: ['--demo', '--admin-token', ADMIN_TOKEN] });
  browser = await launch();
});
after(async () => { await browser?.close(); await node?.stop(); });

async function person(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(node.url);
  await page.fill('#name', name);
  await page.click('#connect');
  await page.waitForSelector(`#status:text("connected as ${name}")`);
  await page.waitForSelector('#messages li:text("joined lobby")');
  await page.waitForSelector('#feed-status:text("live")');
  return page;
}

/** The admin table's cells of `plugin`, as text. */
const row = (page, plugin) => page.$$eval(`#plugins tr[data-plugin="${plugin}"] td`, (tds) => tds.map((td) => td.textContent));

test('two browsers chat, the feed updates live, the admin view shows live counters', async () => {
  const alice = await person('alice');
  const bob = await person('bob');
  await alice.fill('#text', 'hello from alice');
  await alice.click('#send');
  await bob.waitForSelector('#messages li:text("alice: hello from alice")');
  await alice.waitForSelector('#messages li.me:text("me: hello from alice")');
  await bob.fill('#text', 'hi alice');
  await bob.click('#send');
  await alice.waitForSelector('#messages li:text("bob: hi alice")');

  // Alice posts over Socket.IO (an editor token); both pages read the feed over SSE.
  await alice.fill('#post-title', 'Portico ships metrics');
  await alice.click('#post');
  await bob.waitForSelector('#feed li:text("Portico ships metrics (alice)")');
  await alice.waitForSelector('#feed li:text("Portico ships metrics (alice)")');

  // The admin view: every plugin listed; chat's event counter counts the
  // joins and messages above (and grows with the next message).
  const chatEvents = () => Number(document.querySelector('#plugins tr[data-plugin="chat"] td:nth-child(4)')?.textContent);
  // 2 joins + 2 messages so far (the table refreshes every 2 s).
  await alice.waitForFunction(`(${chatEvents})() >= 4`, null, { timeout: 10000 });
  await alice.waitForSelector('#plugins tr[data-plugin="feed"]');
  const [name, version, , events] = await row(alice, 'chat');
  assert.equal(name, 'chat');
  assert.match(version, /^\d+\.\d+\.\d+/);
  await bob.fill('#text', 'one more');
  await bob.click('#send');
  await alice.waitForFunction(`(${chatEvents})() > ${Number(events)}`, null, { timeout: 10000 });
  const [, , feedConnections] = await row(alice, 'feed');
  assert.equal(feedConnections, '2');

  mkdirSync('artifacts', { recursive: true });
  await alice.screenshot({ path: 'artifacts/demo.png', fullPage: true });
});
