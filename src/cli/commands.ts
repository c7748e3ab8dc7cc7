// The command table: one entry per command, each module loaded only when it runs.
export interface Command {
  run(args: string[]): Promise<number>;
}

export const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  status: { summary: 'knobs, counters, savings and the processes that merge', load: () => import('./status.js') },
  tune: { summary: 'drive ksmd: scan first, merge second (replaces ksmtuned)', load: () => import('./tune.js') },
};
