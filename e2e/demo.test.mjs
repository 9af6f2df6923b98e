// The demo page in a real browser: two people chat with each other.
import { test, before, after } from 'node:test';
import { mkdirSync } from 'node:fs';
import { startPortico } from './fixture.mjs';
import { launch } from './browser.mjs';

let node, browser;
before(async () => {
  node = await startPortico({ plugins: ['chat', 'echo'], args: ['--demo'] });
  browser = await launch();
});
after(async () => { await browser?.close(); await node?.stop(); });

async function person(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(node.url);
  await page.fill('#name', name);
  await page.click('#connect');
  await page.waitForSelector(`#status:text("connected as ${name}")`);
  await page.waitForSelector('#messages li:text("joined lobby")');
  return page;
}

test('two browsers chat with each other through the demo page', async () => {
  const alice = await person('alice');
  const bob = await person('bob');
  await alice.fill('#text', 'hello from alice');
  await alice.click('#send');
  await bob.waitForSelector('#messages li:text("alice: hello from alice")');
  await alice.waitForSelector('#messages li.me:text("me: hello from alice")');
  await bob.fill('#text', 'hi alice');
  await bob.click('#send');
  await alice.waitForSelector('#messages li:text("bob: hi alice")');
  mkdirSync('artifacts', { recursive: true });
  await alice.screenshot({ path: 'artifacts/demo.png', fullPage: true });
});
