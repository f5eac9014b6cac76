// POSIX shell quoting for the one place tstack cannot avoid a shell string: a command sent over
// SSH is a single string that the remote login shell parses. Every remote command is built as an
// argument array of validated values and turned into a string only here; nothing else in
// controller/host concatenates shell text.
import { TStackError } from '../../shared/errors.js';

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quote one word so that any POSIX sh yields exactly `s` as one argument. */
export function shQuote(s: string): string {
  if (typeof s !== 'string') throw new TStackError('INVALID_ARGUMENT', 'shQuote: expected a string');
  if (s.includes('\0')) throw new TStackError('INVALID_ARGUMENT', 'shQuote: NUL byte in an argument');
  if (s !== '' && SAFE.test(s)) return s;
  // inside single quotes nothing is special; a single quote is closed, escaped, reopened
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** An argument vector as one shell command line. */
export function shJoin(argv: readonly string[]): string {
  if (argv.length === 0) throw new TStackError('INVALID_ARGUMENT', 'shJoin: empty command');
  return argv.map(shQuote).join(' ');
}
