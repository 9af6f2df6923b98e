// /asyncapi.json is a valid AsyncAPI 3.0 document describing the loaded plugins.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { startPortico } from './fixture.mjs';

const require = createRequire(import.meta.url);
const specs = require('@asyncapi/specs');

let node;
before(async () => { node = await startPortico({ plugins: ['chat', 'echo'] }); });
after(() => node.stop());

export function validateAsyncApi(doc) {
  // The bundled schema carries its own copy of the draft-07 meta-schema.
  const ajv = new Ajv({ strict: false, allErrors: true, meta: false, validateSchema: false });
  addFormats(ajv);
  const validate = ajv.compile(specs.schemas['3.0.0']);
  const ok = validate(doc);
  return ok ? [] : validate.errors;
}

test('the document validates against the AsyncAPI 3.0 schema', async () => {
  const doc = await (await fetch(`${node.url}/asyncapi.json`)).json();
  assert.deepEqual(validateAsyncApi(doc), []);
  assert.equal(doc.asyncapi, '3.0.0');
  // The validator does reject a broken document.
  assert.notDeepEqual(validateAsyncApi({ ...doc, info: undefined, channels: 7 }), []);
});

test('chat is a channel at /chat with its events and payload schemas', async () => {
  const doc = await (await fetch(`${node.url}/asyncapi.json`)).json();
  assert.equal(doc.channels.chat.address, '/chat');
  assert.equal(doc.channels.echo.address, '/echo');
  const join = doc.channels.chat.messages.join;
  assert.equal(join.payload.type, 'object');
  assert.ok(join.payload.required.includes('room'));
  // The client sends `message`, and the server sends `message` back to room members.
  const actions = Object.values(doc.operations)
    .filter((op) => op.channel.$ref === '#/channels/chat')
    .map((op) => op.action);
  assert.ok(actions.includes('receive') && actions.includes('send'), `chat operations: ${actions}`);
});

test('the probes answer', async () => {
  assert.equal(await (await fetch(`${node.url}/healthz`)).text(), 'ok');
  const ready = await fetch(`${node.url}/readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual((await ready.json()).plugins.sort(), ['chat', 'echo']);
});
