#!/usr/bin/env node
// The entry point. Its first statement keeps SIGUSR1 from opening Node's inspector: on Node 20 the signal
// starts a debugger on 127.0.0.1:9229 that any local user can drive, as root. The listener stays for the
// life of the process (removing the last listener would make SIGUSR1 fatal); `tune` adds its own to retune.
// Nothing is imported statically, because ESM imports are loaded before a module's first line runs.
// Node handles SIGUSR1 itself from startup until this line: docs/signals.md gives that window as measured,
// and how to close it on Node >= 22.14 (--disable-sigusr1). The signals that come before the command
// is loaded are counted: `tune` retunes for them (a VM start hook's SIGUSR1 is not lost), and reloads for a
// SIGHUP that came while it loaded.
let earlyUsr1: number | undefined = 0;
process.on('SIGUSR1', () => {
  if (earlyUsr1 !== undefined) earlyUsr1++;
});
// SIGHUP reloads tune's config, and until tune's modules are loaded its default action would end the
// daemon (a `systemctl reload` right after a start): counted the same way, and tune reloads for them.
// Every other command keeps the default (a hangup ends it).
let earlyHup: number | undefined = 0;
if (process.argv[2] === 'tune') {
  process.on('SIGHUP', () => {
    if (earlyHup !== undefined) earlyHup++;
  });
}

// A closed stdout (`pagefuse audit | head -1`) ends the command quietly with 141, what a shell reports for a
// command killed by SIGPIPE (Node ignores SIGPIPE, so writes fail with EPIPE instead). A command that holds
// host state and stops on SIGTERM (tune puts the knobs back, serve closes its socket) stops that way first.
const EXIT_PIPE = 141;
let pipeClosed = false;
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  if (pipeClosed) return;
  pipeClosed = true;
  if (process.listenerCount('SIGTERM') > 0) process.emit('SIGTERM', 'SIGTERM');
  else process.exit(EXIT_PIPE);
});
process.stderr.on('error', () => {}); // nowhere left to say anything

// tune's JavaScript stays on V8's baseline tier, from before its modules load (compiler.ts says why).
if (process.argv[2] === 'tune') (await import('./compiler.js')).baselineCompilerOnly();
const { main } = await import('./main.js');
const code = await main(process.argv.slice(2), {
  takeEarlyUsr1() {
    const n = earlyUsr1 ?? 0;
    earlyUsr1 = undefined; // from here on the command's own handler answers; this listener keeps it harmless
    return n;
  },
  takeEarlyHup() {
    const n = earlyHup ?? 0;
    earlyHup = undefined;
    return n;
  },
});
await new Promise((resolve) => setImmediate(resolve)); // a failed last write reports its EPIPE first
// Exit here rather than let the event loop drain: while Node tears the loop down it closes the signal
// handles and SIGUSR1 falls back to its default action, so a signal in those last moments killed a command
// that had finished well. Writes to stdout and stderr are synchronous on Linux (files, pipes and terminals).
process.exit(pipeClosed ? EXIT_PIPE : code);
