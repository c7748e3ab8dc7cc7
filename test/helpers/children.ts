// Children running test/fixtures/fill-pages.mjs: wait until their pages are filled, and kill what is left.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';

/** The pid a fill-pages child prints ("ready <pid>") once its pages are filled. */
export async function readyPid(child: ChildProcess): Promise<number> {
  let out = '';
  for await (const chunk of child.stdout!) {
    out += String(chunk);
    const m = /ready (\d+)\n/.exec(out);
    if (m) return Number(m[1]);
  }
  throw new Error(`the child ended before it was ready: ${out}`);
}

/** SIGKILLs every child still running and waits for it to exit. */
export async function stopChildren(children: readonly (ChildProcess | undefined)[]): Promise<void> {
  await Promise.all(
    children.map(async (c) => {
      if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
      c.kill('SIGKILL');
      await once(c, 'exit');
    }),
  );
}
