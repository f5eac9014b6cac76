// Typed errors shared by agents, the controller and the protocol: {code, message, details}.
// A message says what went wrong and what to do; details carry machine-readable context
// (the failed command, its stderr, the offending field). Each code has one row in
// ERROR_TABLE: its HTTP status (every tstack HTTP server) and its kind — what a caller may do
// next: retry later, give up, resolve a conflict, or stop looking for the thing.

export const ErrorCodes = [
  'INVALID_ARGUMENT',
  'UNAUTHORIZED',
  'FORBIDDEN',
  'NOT_FOUND',
  'CONFLICT',
  'TIMEOUT',
  'CANCELLED',
  'AGENT_UNREACHABLE',
  'AGENT_ERROR',
  'TASK_LOST',
  'EXEC_FAILED',
  'LIBVIRT_ERROR',
  'VM_NOT_FOUND',
  'VOLUME_NOT_FOUND',
  'IMAGE_NOT_FOUND',
  'NETWORK_ERROR',
  'STORAGE_ERROR',
  'DOWNLOAD_FAILED',
  'CHECKSUM_MISMATCH',
  'CAPACITY_EXCEEDED',
  'INTERNAL',
] as const;
export type ErrorCode = (typeof ErrorCodes)[number];

/**
 * retryable: the same call may succeed later (unreachable agent, timeout, lost task);
 * permanent: it will not, until the request changes (bad input, auth, a bug);
 * conflict: the state of something forbids it now (in use, wrong state, full);
 * not-found: the thing is not there (or not visible to the caller).
 */
export type ErrorKind = 'retryable' | 'permanent' | 'conflict' | 'not-found';

export interface ErrorInfo {
  status: number;
  kind: ErrorKind;
}

const row = (status: number, kind: ErrorKind): ErrorInfo => ({ status, kind });

/** Every known code: HTTP status and kind. A code not listed is a 500, permanent. */
export const ERROR_TABLE: Readonly<Record<string, ErrorInfo>> = {
  INVALID_ARGUMENT: row(400, 'permanent'),
  HOST_AUTH_FAILED: row(400, 'permanent'),
  HOST_NOT_PRIVILEGED: row(400, 'permanent'),
  HOST_OS_UNSUPPORTED: row(400, 'permanent'),
  IPMI_AUTH_FAILED: row(400, 'permanent'),
  UNAUTHORIZED: row(401, 'permanent'),
  FORBIDDEN: row(403, 'permanent'),
  NOT_FOUND: row(404, 'not-found'),
  VM_NOT_FOUND: row(404, 'not-found'),
  VOLUME_NOT_FOUND: row(404, 'not-found'),
  IMAGE_NOT_FOUND: row(404, 'not-found'),
  METHOD_NOT_ALLOWED: row(405, 'permanent'),
  PAYLOAD_TOO_LARGE: row(413, 'permanent'),
  UNSUPPORTED_MEDIA_TYPE: row(415, 'permanent'),
  CONFLICT: row(409, 'conflict'),
  CAPACITY_EXCEEDED: row(409, 'conflict'),
  QUOTA_EXCEEDED: row(409, 'conflict'),
  RATE_LIMITED: row(429, 'conflict'), // 4xx: never 'retryable' (the same call fails until Retry-After has passed)
  HOST_KEY_MISMATCH: row(409, 'conflict'),
  // flat/apply's DNS delta names a base the agent does not hold: the controller sends the whole set
  DNS_BASE_MISMATCH: row(409, 'conflict'),
  INTERNAL: row(500, 'permanent'),
  INJECTED_FAULT: row(500, 'permanent'),
  AGENT_ERROR: row(500, 'permanent'),
  EXEC_FAILED: row(500, 'permanent'),
  LIBVIRT_ERROR: row(500, 'permanent'),
  NETWORK_ERROR: row(500, 'permanent'),
  STORAGE_ERROR: row(500, 'permanent'),
  CHECKSUM_MISMATCH: row(500, 'permanent'),
  CANCELLED: row(500, 'permanent'),
  DOWNLOAD_FAILED: row(500, 'retryable'),
  INTERRUPTED: row(500, 'retryable'),
  HOST_NOT_CONNECTED: row(500, 'retryable'),
  HOST_UNREACHABLE: row(502, 'retryable'),
  BMC_UNREACHABLE: row(502, 'retryable'),
  IPMI_ERROR: row(502, 'permanent'),
  PXE_TIMEOUT: row(504, 'retryable'),
  AGENT_UNREACHABLE: row(503, 'retryable'),
  TASK_LOST: row(503, 'retryable'),
  BUSY: row(503, 'retryable'),
  TIMEOUT: row(504, 'retryable'),
};

const UNKNOWN: ErrorInfo = row(500, 'permanent');

/** Status and kind of a code (ERROR_TABLE, else 500 / permanent). */
export function errorInfo(code: string): ErrorInfo {
  return Object.hasOwn(ERROR_TABLE, code) ? ERROR_TABLE[code]! : UNKNOWN;
}

export interface ErrorBody {
  code: ErrorCode | string;
  message: string;
  details?: Record<string, unknown>;
}

export class TStackError extends Error {
  readonly code: string;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode | string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'TStackError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }

  /** What a caller may do next (from ERROR_TABLE). */
  get kind(): ErrorKind {
    return errorInfo(this.code).kind;
  }

  toJSON(): ErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }

  static from(err: unknown): TStackError {
    if (err instanceof TStackError) return err;
    if (err instanceof Error) return new TStackError('INTERNAL', err.message, { name: err.name });
    return new TStackError('INTERNAL', String(err));
  }

  static fromBody(body: ErrorBody): TStackError {
    return new TStackError(body.code, body.message, body.details);
  }
}

export const invalid = (field: string, reason: string): TStackError =>
  new TStackError('INVALID_ARGUMENT', `${field}: ${reason}`, { field, reason });

/** HTTP status for an error code, used by every HTTP server in tstack (ERROR_TABLE). */
export function httpStatusOf(code: string): number {
  return errorInfo(code).status;
}
