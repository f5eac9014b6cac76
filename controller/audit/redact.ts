// Redaction of request bodies before they are written to the audit log: any field whose name
// says it holds a secret (passwords, private and SSH keys, tokens, user data) is replaced,
// at any depth. Names are matched, not values, so a secret under an innocent name is the
// schema's problem (and schemas name their secrets).

export const REDACTED = '*****';

const SECRET_NAME = /(pass(word|wd|phrase)?$|password|secret|token|private.?key|ssh.?key|user.?data|credential|api.?key|access.?key|authorization|cookie)/i;

/** Does a field of this name hold a secret? */
export function isSecretField(name: string): boolean {
  return SECRET_NAME.test(name);
}

const MAX_DEPTH = 8;
const MAX_STRING = 2048;

/**
 * A copy of `v` with secret fields replaced by REDACTED. Long strings are cut (an audit entry
 * is a record of intent, not a copy of an upload) and very deep structures are elided.
 */
export function redact(v: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) return '…';
  if (typeof v === 'string') return v.length > MAX_STRING ? `${v.slice(0, MAX_STRING)}…(${v.length} chars)` : v;
  if (Array.isArray(v)) return v.slice(0, 100).map((x) => redact(x, depth + 1));
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    out[k] = isSecretField(k) && x !== undefined && x !== null && x !== '' ? REDACTED : redact(x, depth + 1);
  }
  return out;
}
