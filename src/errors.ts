// Errors shaped like Node's own, so callers can `switch (err.code)`: system failures carry the errno
// name, bad arguments Node's ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE / ERR_OUT_OF_RANGE, aborts
// ABORT_ERR, and pagefuse's own conditions an ERR_ code of their own. Every error pagefuse throws is
// made here.

/** Node's codes for bad arguments and aborts, as pagefuse uses them. */
export type ArgumentErrorCode = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE';

/** Conditions of pagefuse's own. */
export type PagefuseOwnCode = 'ERR_REGION_DISPOSED' | 'ERR_ISOLATION' | 'ERR_TUNER_STOPPED' | 'ERR_USAGE' | 'ENOKSM';

/** The errno names pagefuse's errors carry (from the kernel, or chosen to say the same thing). */
export type SystemErrorCode =
  | 'EACCES'
  | 'EBUSY'
  | 'ECHILD'
  | 'EINVAL'
  | 'EIO'
  | 'ENOENT'
  | 'ENOMEM'
  | 'ENOTSUP'
  | 'EPERM'
  | 'ESRCH'
  | 'ETIMEDOUT'
  | 'EUNKNOWN';

/** Every `code` an error thrown by pagefuse can carry. */
export type ErrorCode = ArgumentErrorCode | 'ABORT_ERR' | PagefuseOwnCode | SystemErrorCode;

export interface PagefuseErrorOptions {
  errno?: number;
  syscall?: string;
  path?: string;
  cause?: unknown;
}

export class PagefuseError extends Error {
  /** One of ErrorCode; a system error passed through keeps the kernel's errno name. */
  readonly code: ErrorCode | (string & {});
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;

  constructor(code: ErrorCode | (string & {}), message: string, options: PagefuseErrorOptions = {}) {
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

/** How an error message shows the value it got: its type where that is the surprise, strings quoted. */
export function received(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  switch (typeof value) {
    case 'string':
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 37)}...` : value)}`;
    case 'number':
    case 'boolean':
    case 'bigint':
      return typeof value === 'bigint' ? `${value}n` : String(value);
    case 'symbol':
      return value.toString();
    case 'function':
      return value.name ? `the function ${value.name}` : 'a function';
    default: {
      if (Array.isArray(value)) return `an array of ${value.length}`;
      const ctor = (value as object).constructor?.name;
      return ctor && ctor !== 'Object' ? `an instance of ${ctor}` : 'an object';
    }
  }
}

type CodedError<E extends Error, C extends string> = E & { code: C };

function coded<E extends Error, C extends string>(err: E, code: C): CodedError<E, C> {
  return Object.defineProperty(err, 'code', { value: code, enumerable: true, writable: true, configurable: true }) as CodedError<E, C>;
}

/** A value of the wrong type (Node's ERR_INVALID_ARG_TYPE). The message ends with what it got. */
export function invalidArgType(message: string, value: unknown): CodedError<TypeError, 'ERR_INVALID_ARG_TYPE'> {
  return coded(new TypeError(`${message}, got ${received(value)}`), 'ERR_INVALID_ARG_TYPE');
}

/** A value of the right type outside what is allowed (Node's ERR_OUT_OF_RANGE). */
export function outOfRange(message: string, ...value: [unknown?]): CodedError<RangeError, 'ERR_OUT_OF_RANGE'> {
  const got = value.length > 0 ? `, got ${received(value[0])}` : '';
  return coded(new RangeError(`${message}${got}`), 'ERR_OUT_OF_RANGE');
}

/** A value that is none of the allowed ones (Node's ERR_INVALID_ARG_VALUE, as a RangeError). */
export function invalidArgValue(message: string, ...value: [unknown?]): CodedError<RangeError, 'ERR_INVALID_ARG_VALUE'> {
  const got = value.length > 0 ? `, got ${received(value[0])}` : '';
  return coded(new RangeError(`${message}${got}`), 'ERR_INVALID_ARG_VALUE');
}

/** Arguments that do not go together, or a value of no use here (Node's ERR_INVALID_ARG_VALUE, a TypeError). */
export function invalidUse(message: string): CodedError<TypeError, 'ERR_INVALID_ARG_VALUE'> {
  return coded(new TypeError(message), 'ERR_INVALID_ARG_VALUE');
}

/** A bad number: ERR_INVALID_ARG_TYPE when it is no number at all, else ERR_OUT_OF_RANGE. */
export function invalidNumber(message: string, value: unknown): CodedError<TypeError | RangeError, 'ERR_INVALID_ARG_TYPE' | 'ERR_OUT_OF_RANGE'> {
  return typeof value === 'number' ? outOfRange(message, value) : invalidArgType(message, value);
}

/** The AbortError Node's own APIs reject with: code 'ABORT_ERR', the signal's reason as its cause. */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR' as const;

  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
  }
}

export function abortError(signal?: AbortSignal): AbortError {
  return new AbortError(undefined, signal === undefined ? undefined : { cause: signal.reason });
}

/** Checks options.signal (undefined or an AbortSignal) and throws the AbortError if it has fired. */
export function throwIfAborted(signal: unknown, what = 'options'): asserts signal is AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType(`${what}: signal must be an AbortSignal`, signal);
  if (signal?.aborted) throw abortError(signal);
}
