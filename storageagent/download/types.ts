// A download source opens a byte stream at an offset; the generic loop in index.ts does the
// rest (writing, hashing, progress, retries with resume).
import type { Readable } from 'node:stream';
import type { BlockWriter } from './blocks.js';
import { TStackError } from '../../shared/errors.js';

export interface Opened {
  /** the body as a stream; or, from a source with its own reused buffers, pump */
  stream?: Readable;
  /** reads the body into w itself; resolves at its end (or when the connection ends early: the caller compares counts) */
  pump?: (w: BlockWriter) => Promise<void>;
  /** total size of the remote file when known */
  total: number | null;
  /** where the stream actually starts (0 when the server ignored a range request) */
  offset: number;
  close?: () => void;
}

export interface Source {
  /** display form of the URL without credentials */
  readonly display: string;
  open(offset: number, signal: AbortSignal): Promise<Opened>;
  /** release connections (called once at the end) */
  dispose?(): Promise<void>;
}

export interface SourceOptions {
  sshPrivateKey?: string;
}

/** A failure that retrying cannot fix (404, auth refused, no such file). */
export class FatalDownloadError extends TStackError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('DOWNLOAD_FAILED', message, details);
  }
}

/** The URL without user:password, for messages and logs. */
export function redact(u: URL): string {
  const c = new URL(u.href);
  c.username = '';
  c.password = '';
  return c.href;
}
