// Exit codes of the tstack CLI — scripts rely on them (docs/api.md lists them too).
export const Exit = {
  OK: 0,
  /** The API reported an error not covered below (5xx, unexpected answers). */
  API_ERROR: 1,
  /** Bad command line, or the API rejected the input (400 INVALID_ARGUMENT). */
  USAGE: 2,
  /** Not logged in, session expired or wrong credentials (401), or not allowed (403). */
  AUTH: 3,
  /** The resource (or job) does not exist or is not visible to the account (404). */
  NOT_FOUND: 4,
  /** Conflict: in use, wrong state, already exists (409). */
  CONFLICT: 5,
  /** A long operation ran and ended Failed. */
  JOB_FAILED: 6,
  /** The controller cannot be reached. */
  UNREACHABLE: 7,
  /** Gave up waiting for a job (--timeout); it may still finish. */
  TIMEOUT: 8,
} as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code?: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export function exitCodeOfStatus(status: number): number {
  if (status === 400) return Exit.USAGE;
  if (status === 401 || status === 403) return Exit.AUTH;
  if (status === 404) return Exit.NOT_FOUND;
  if (status === 409) return Exit.CONFLICT;
  return Exit.API_ERROR;
}
