// minipay.js must stay ES2017 (what mini-program runtimes take without a build step): parse it
// with the acorn parser Node ships internally, limited to ES2017.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const PARSE = `
let acorn;
try {
  acorn = require('internal/deps/acorn/acorn/dist/acorn');
} catch {
  process.exit(3);
}
const source = require('node:fs').readFileSync(process.argv[1], 'utf8');
acorn.parse(source, { ecmaVersion: 2017, sourceType: 'script' });
`;

test('minipay.js is ES2017 (no object spread, optional chaining, ?? or class fields)', (t) => {
  const file = path.join(__dirname, '..', 'minipay.js');
  const run = spawnSync(process.execPath, ['--expose-internals', '-e', PARSE, file], {
    encoding: 'utf8',
  });
  if (run.status === 3) {
    t.skip('this Node has no internal acorn to check the syntax level with');
    return;
  }
  assert.equal(run.status, 0, `not ES2017:\n${run.stderr}`);
});
