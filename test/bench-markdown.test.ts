import { test } from 'node:test';
import assert from 'node:assert/strict';
import { markdownTable, rewriteMarkers } from '../src/bench/markdown.js';

const DOC = ['# Title', '<!-- bench:tuner -->', 'old table', 'old line', '<!-- /bench:tuner -->', 'after', '<!-- bench:hashing -->', 'kept', '<!-- /bench:hashing -->', ''].join('\n');

test('rewriteMarkers replaces what stands between a pair of markers with the section of that name', () => {
  const r = rewriteMarkers(DOC, { tuner: '| a |\n|---|\n| 1 |' });
  assert.equal(r.text, ['# Title', '<!-- bench:tuner -->', '| a |', '|---|', '| 1 |', '<!-- /bench:tuner -->', 'after', '<!-- bench:hashing -->', 'kept', '<!-- /bench:hashing -->', ''].join('\n'));
  assert.deepEqual(r.filled, ['tuner']);
});

test('rewriteMarkers leaves a marked block the run has no section for as it was, and names it', () => {
  const r = rewriteMarkers(DOC, { tuner: 'new' });
  assert.deepEqual(r.left, ['hashing']);
  assert.match(r.text, /<!-- bench:hashing -->\nkept\n<!-- \/bench:hashing -->/);
});

test('rewriteMarkers refuses an opening marker without its closing one', () => {
  assert.throws(() => rewriteMarkers('<!-- bench:tuner -->\nx\n', { tuner: 'new' }), { message: 'line 1: <!-- bench:tuner --> without <!-- /bench:tuner -->' });
});

test('markdownTable escapes a | inside a cell', () => {
  assert.equal(markdownTable(['a', 'b'], [['x|y', 2]]), '| a | b |\n|---|---|\n| x\\|y | 2 |');
});
