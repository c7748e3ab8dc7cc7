// Errors shaped like Node's own system errors, so callers can `switch (err.code)`.

export interface PagefuseErrorOptions {
  errno?: number;
  syscall?: string;
  path?: string;
  cause?: unknown;
}

export class PagefuseError extends Error {
  readonly code: string;
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;

  constructor(code: string, message: string, options: PagefuseErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PagefuseError';
    this.code = code;
    if (options.errno !== undefined) this.errno = options.errno;
    if (options.syscall !== undefined) this.syscall = options.syscall;
    if (options.path !== undefined) this.path = options.path;
  }
}

export interface SystemErrorLike extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

export function isSystemError(err: unknown, code?: string): err is SystemErrorLike {
  if (!(err instanceof Error)) return false;
  const c = (err as SystemErrorLike).code;
  return typeof c === 'string' && (code === undefined || c === code);
}

/** Rewraps a system error with a message that says what to do, keeping code/errno/syscall/path. */
export function explain(err: unknown, message: string, code?: string): PagefuseError {
  const e = err as SystemErrorLike;
  const options: PagefuseErrorOptions = { cause: err };
  if (e?.errno !== undefined) options.errno = e.errno;
  if (e?.syscall !== undefined) options.syscall = e.syscall;
  if (e?.path !== undefined) options.path = e.path;
  return new PagefuseError(code ?? e?.code ?? 'EUNKNOWN', message, options);
}

export function abortError(signal?: AbortSignal): Error {
  const reason = signal?.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const err = new DOMException('The operation was aborted', 'AbortError');
  return reason === undefined ? err : Object.assign(err, { cause: reason });
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError(signal);
}
