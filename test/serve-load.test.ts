// `pagefuse serve` under load (bench/serve-load.ts, shortened): after a warm-up of 1000 scrapes (V8's heap
// grows to its working size over the first several hundred), 600 more, 20 at a time, leave its open fds
// no higher than the warm-up left them and its RSS within 8 MiB of it. The full 2,000-scrape figures come from
// `node --import tsx bench/serve-load.ts`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serveLoad } from '../bench/serve-load.js';

test('serve: 600 scrapes, 20 at a time, open no fd beyond the warm-up\'s and grow RSS by under 8 MiB', async (t) => {
  const r = await serveLoad(600, 20);
  t.diagnostic(`p50 ${r.p50Ms.toFixed(1)} ms p99 ${r.p99Ms.toFixed(1)} ms; RSS ${r.warm.rssBytes} → ${r.end.rssBytes}; fds ${r.warm.fds} → ${r.end.fds}`);
  assert.equal(r.failures, 0);
  // A client connection of the warm-up may close meanwhile (59 after 60 was seen): a leak is growth.
  assert.ok(r.end.fds <= r.warm.fds, `fds grew from ${r.warm.fds} to ${r.end.fds}`);
  assert.ok(r.end.rssBytes - r.warm.rssBytes < 8 * 1024 * 1024, `RSS grew by ${r.end.rssBytes - r.warm.rssBytes} bytes`);
});
