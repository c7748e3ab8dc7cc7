// An in-process Tuner puts the knobs it found back however its process ends: on exit (process.exit or
// an empty event loop), on an uncaught exception or unhandled rejection that is about to end it, and on
// SIGINT/SIGTERM, which are raised again afterwards so the default disposition (or the embedder's own
// handlers) still decide what happens. A SIGKILL cannot be caught: the crash record covers it.

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

export interface ExitCleanup {
  /** Synchronous: runs from 'exit' and just before a crash, where nothing asynchronous completes. */
  restoreSync(): void;
  /** The graceful path for a signal (stop deciding, then restore). */
  stop(): Promise<void>;
  /** Handle SIGINT/SIGTERM too (the pagefuse tune command handles them itself). */
  signals: boolean;
}

/** Installs the handlers; returns the function that removes them again. */
export function installExitCleanup(cleanup: ExitCleanup): () => void {
  const report = (err: unknown) => process.stderr.write(`pagefuse: putting the KSM knobs back failed: ${(err as Error)?.message ?? String(err)}\n`);
  const onExit = () => {
    try {
      cleanup.restoreSync();
    } catch (err) {
      report(err);
    }
  };
  const onCrash = (_err: unknown, origin: string) => {
    // With a handler for it the process goes on, and so does the tuner.
    const handled = origin === 'unhandledRejection' ? process.listenerCount('unhandledRejection') > 0 : process.listenerCount('uncaughtException') > 0;
    if (!handled) onExit();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    uninstall();
    cleanup
      .stop()
      .catch(report)
      .finally(() => {
        onExit();
        // Nobody else listens: raise it again for the default disposition (death by the signal).
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      });
  };
  process.on('exit', onExit);
  process.on('uncaughtExceptionMonitor', onCrash);
  if (cleanup.signals) for (const s of SIGNALS) process.on(s, onSignal);
  let installed = true;
  function uninstall(): void {
    if (!installed) return;
    installed = false;
    process.off('exit', onExit);
    process.off('uncaughtExceptionMonitor', onCrash);
    for (const s of SIGNALS) process.off(s, onSignal);
  }
  return uninstall;
}
