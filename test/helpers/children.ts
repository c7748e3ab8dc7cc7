// Stopping child processes a test started: SIGKILL to each one still running, resolved once all exited.
import type { ChildProcess } from 'node:child_process';

export async function killChildren(children: readonly ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map((c) =>
      c.exitCode !== null || c.signalCode !== null
        ? undefined
        : new Promise<void>((resolve) => {
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
    ),
  );
}
