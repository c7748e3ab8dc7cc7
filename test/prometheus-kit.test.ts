// contrib/: the alerting rules pass promtool, and the dashboard and the rules query only metrics a real
// scrape of pagefuse serve exposes (so a renamed metric breaks this test, not an operator's dashboard).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, REPO as ROOT } from './helpers/cli.js';
import { parseExposition } from './helpers/prom-text.js';

const KIT = join(ROOT, 'contrib');
const PROMTOOL = '/usr/bin/promtool';
let scraped = new Set<string>();
let serve: ChildProcess | undefined;

before(async () => {
  serve = spawn(process.execPath, [...CLI, 'serve', '--listen', '127.0.0.1:0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(serve.stdout!, 'data')) as [Buffer];
  const url = /listening on (http:\/\/\S+)\n/.exec(line.toString())?.[1];
  assert.ok(url, line.toString());
  scraped = new Set(parseExposition(await (await fetch(url)).text()).keys());
});

after(async () => {
  if (serve !== undefined && serve.exitCode === null) {
    serve.kill('SIGTERM');
    await once(serve, 'exit');
  }
});

/** Metric names in a PromQL expression: identifiers left once strings, label matchers, by/without lists,
 * ranges, functions and operators are taken out. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\boffset\s+\w+/g, '');
  const names: string[] = [];
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?/g)) {
    const word = m[0].replace(/\s*\($/, '');
    if (m[1] !== undefined) continue; // a function call
    if (['and', 'or', 'unless', 'bool', 'e', 'Inf', 'NaN'].includes(word)) continue;
    names.push(word);
  }
  return names;
}

function dashboardQueries(): string[] {
  const dash = JSON.parse(readFileSync(join(KIT, 'grafana', 'pagefuse-dashboard.json'), 'utf8')) as {
    panels: { targets?: { expr: string }[] }[];
    templating: { list: { type: string; query?: string | { query: string } }[] };
  };
  const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  for (const v of dash.templating.list) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    exprs.push(q.replace(/^label_values\((.*),\s*\w+\)$/, '$1'));
  }
  return exprs;
}

test('promtool check rules accepts the alerting rules', () => {
  const r = spawnSync(PROMTOOL, ['check', 'rules', 'pagefuse-rules.yml'], { cwd: join(KIT, 'prometheus'), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS: 6 rules found/);
});

test('promtool test rules: each alert fires on its unit-test series and only there', () => {
  const r = spawnSync(PROMTOOL, ['test', 'rules', 'pagefuse-rules.test.yml'], { cwd: join(KIT, 'prometheus'), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS/);
});

test('every dashboard query names only metrics a real scrape of pagefuse serve exposes', () => {
  const queries = dashboardQueries();
  assert.ok(queries.length >= 10);
  for (const q of queries) {
    const names = metricNames(q);
    assert.ok(names.length > 0, `no metric in '${q}'`);
    for (const n of names) assert.ok(scraped.has(n), `'${n}' (in '${q}') is not in a scrape of pagefuse serve`);
  }
});

test('every alerting rule names only scraped metrics, or the up series Prometheus adds', () => {
  const rules = readFileSync(join(KIT, 'prometheus', 'pagefuse-rules.yml'), 'utf8');
  const exprs = [...rules.matchAll(/expr: (?:>-\n((?:\s{10}.+\n)+)|(.+)\n)/g)].map((m) => (m[1] ?? m[2]).trim());
  assert.equal(exprs.length, 6);
  for (const e of exprs) {
    for (const n of metricNames(e)) assert.ok(n === 'up' || scraped.has(n), `'${n}' (in '${e}') is not scraped`);
  }
});
