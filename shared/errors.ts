// Typed errors shared by agents, the controller and the protocol: {code, message, details}.
// A message says what went wrong and what to do; details carry machine-readable context
// (the failed command, its stderr, the offending field).

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

/** HTTP status for an error code, used by every HTTP server in tstack. */
export function httpStatusOf(code: string): number {
  switch (code) {
    case 'INVALID_ARGUMENT':
    case 'HOST_AUTH_FAILED':
    case 'HOST_NOT_PRIVILEGED':
    case 'HOST_OS_UNSUPPORTED':
      return 400;
    case 'UNAUTHORIZED':
      return 401;
    case 'FORBIDDEN':
      return 403;
    case 'NOT_FOUND':
    case 'VM_NOT_FOUND':
    case 'VOLUME_NOT_FOUND':
    case 'IMAGE_NOT_FOUND':
      return 404;
    case 'CONFLICT':
    case 'CAPACITY_EXCEEDED':
      return 409;
    case 'HOST_KEY_MISMATCH':
      return 409;
    case 'HOST_UNREACHABLE':
    case 'AGENT_UNREACHABLE':
      return 502;
    case 'TIMEOUT':
      return 504;
    default:
      return 500;
  }
}
