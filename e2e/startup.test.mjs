// Starting up: bad files in the plugin directory are reported and skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPortico, pluginDir, connect, call } from './fixture.mjs';

test('an invalid or non-component .wasm is reported by name and skipped; the rest serve', async () => {
  const dir = pluginDir(['chat']);
  writeFileSync(join(dir, 'garbage.wasm'), 'definitely not wasm');
  // A valid core module (magic + version 1): wasm, but not a component.
  writeFileSync(join(dir, 'coremodule.wasm'), Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
  const node = await startPortico({ dir });
  try {
    const logs = node.logs();
    assert.match(logs, /skipping plugin garbage: not a WebAssembly component/);
    assert.match(logs, /skipping plugin coremodule: .*core wasm module.*wasm32-wasip2/);
    const s = await connect(node.url, '/chat');
    assert.equal((await call(s, 'join', { room: 'r' })).ok, true);
    s.close();
  } finally {
    await node.stop();
  }
});

test('a typo in the config file stops the start with a clear message', async () => {
  const dir = pluginDir([]);
  const config = join(dir, 'portico.toml');
  writeFileSync(config, '[runtime]\ncall_timeout = 5\n');
  await assert.rejects(startPortico({ dir, args: ['--config', config] }), /unknown field `call_timeout`/);
});
