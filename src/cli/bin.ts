#!/usr/bin/env node
// The entry point. Its first statement keeps SIGUSR1 from opening Node's inspector: on Node 20 the signal
// starts a debugger on 127.0.0.1:9229 that any local user can drive, as root. The listener stays for the
// life of the process (removing the last listener would make SIGUSR1 fatal); `tune` adds its own to retune.
// Nothing is imported statically, because ESM imports are loaded before a module's first line runs.
// Node handles SIGUSR1 itself from startup until this line: docs/signals.md gives that window as measured,
// and how to close it on Node >= 22.14 (--disable-sigusr1).
process.on('SIGUSR1', () => {});

const { main } = await import('./main.js');
// Exit here rather than let the event loop drain: while Node tears the loop down it closes the signal
// handles and SIGUSR1 falls back to its default action, so a signal in those last moments killed a command
// that had finished well. Writes to stdout and stderr are synchronous on Linux (files, pipes and terminals).
process.exit(await main(process.argv.slice(2)));
