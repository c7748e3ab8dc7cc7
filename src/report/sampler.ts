// Polls a SnapshotSource on an interval and keeps a short history. Each read is awaited before the next
// is scheduled, so a slow read never piles up, and the timer is unref'd so it never holds the process open.
import { EventEmitter } from 'node:events';
import { History, figures, type Figures, type Snapshot } from './model.js';
import type { SnapshotSource } from './source.js';
import { invalidNumber } from '../errors.js';

export interface SamplerOptions {
  intervalMs?: number;
  /** Snapshots kept for rates and charts. */
  capacity?: number;
}

export interface SamplerEvents {
  sample: [Figures];
  error: [Error];
}

export class Sampler extends EventEmitter<SamplerEvents> {
  readonly intervalMs: number;
  readonly history: History<Snapshot>;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private inFlight: Promise<Figures> | undefined;

  constructor(
    private readonly source: SnapshotSource,
    options: SamplerOptions = {},
  ) {
    super();
    this.intervalMs = options.intervalMs ?? 1000;
    if (!(this.intervalMs > 0)) throw invalidNumber(`Sampler: intervalMs must be > 0`, this.intervalMs);
    this.history = new History(options.capacity ?? 600);
  }

  /** Reads one snapshot now, adds it to the history and returns its figures. */
  sampleNow(): Promise<Figures> {
    this.inFlight ??= (async () => {
      try {
        const snap = await this.source.read();
        const prev = this.history.last();
        this.history.push(snap);
        return figures(snap, prev);
      } finally {
        this.inFlight = undefined;
      }
    })();
    return this.inFlight;
  }

  /** The latest figures (rates against the snapshot before), or null before the first sample. */
  latest(): Figures | null {
    const cur = this.history.last();
    return cur === undefined ? null : figures(cur, this.history.last(1));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const tick = async (): Promise<void> => {
      try {
        this.emit('sample', await this.sampleNow());
      } catch (err) {
        if (this.listenerCount('error') > 0) this.emit('error', err as Error);
      }
      if (this.running) {
        this.timer = setTimeout(() => void tick(), this.intervalMs);
        this.timer.unref();
      }
    };
    void tick();
  }

  stop(): void {
    this.running = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
