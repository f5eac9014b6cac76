// Opaque list cursors (issue 19): `next` in a list answer is where the following page starts,
// as a store position (Query.after: the last item's sort value, createDate and uuid), so
// walking a whole collection costs each page the same instead of re-skipping `start` rows.
// A cursor is tied to its query (kind, filters, owner restriction, sort) by a short hash: one
// given with another query is a 400, never a page of something else. Anything malformed is a
// 400 naming `cursor`; the content is not a secret (it names the last item of a page).
import { createHash } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import { positionOf } from '../store/query.js';
import type { Position, Query, Resource } from '../store/types.js';

/** Longest cursor accepted (a long text sort value is the only thing that grows it). */
export const CURSOR_MAX = 4096;
/** Longest text sort value a cursor carries; a page ending on a longer one has no `next`. */
const SORT_VALUE_MAX = 2048;

const bad = (reason: string): TStackError => new TStackError('INVALID_ARGUMENT', `cursor: ${reason}`, { field: 'cursor', reason });

// the same few queries come again and again (a page polled by a UI): their hashes are kept
const hashes = new Map<string, string>();

/** What a cursor must agree with: the query without its page bounds. */
function queryHash(q: Query): string {
  const id = JSON.stringify([q.kind, q.filters ?? [], q.ownerAccountUuid ?? null, q.sort ?? null]);
  let h = hashes.get(id);
  if (h === undefined) {
    h = createHash('sha256').update(id).digest('base64url').slice(0, 16);
    if (hashes.size >= 1000) hashes.clear();
    // a long query (hostile or not) is hashed each time rather than kept
    if (id.length <= 1024) hashes.set(id, h);
  }
  return h;
}

/** The cursor of the page after `last` (undefined when its sort value is too long to carry). */
export function encodeCursor(q: Query, last: Resource): string | undefined {
  const p = positionOf(last, q.sort);
  if (typeof p.sort === 'string' && p.sort.length > SORT_VALUE_MAX) return undefined;
  const parts: unknown[] = [queryHash(q), p.createDate, p.uuid];
  if (q.sort) parts.push(p.sort ?? null);
  return Buffer.from(JSON.stringify(parts)).toString('base64url');
}

/** The position a cursor names, checked against the query it is given with. */
export function decodeCursor(raw: string, q: Query): Position {
  if (raw.length === 0 || raw.length > CURSOR_MAX || !/^[A-Za-z0-9_-]+$/.test(raw)) throw bad(`expected the 'next' value of a previous page`);
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw bad(`expected the 'next' value of a previous page`);
  }
  if (!Array.isArray(parts) || parts.length !== (q.sort ? 4 : 3)) throw bad('malformed, or given with another sort');
  const [hash, createDate, uuid, sort] = parts as unknown[];
  if (typeof hash !== 'string' || typeof createDate !== 'string' || typeof uuid !== 'string' || createDate.length > 64 || uuid.length > 64) throw bad('malformed');
  if (hash !== queryHash(q)) throw bad('belongs to another query: repeat the q and sort of the page that gave it');
  const p: Position = { createDate, uuid };
  if (q.sort) {
    if (sort !== null && !(typeof sort === 'string' && sort.length <= SORT_VALUE_MAX) && !(typeof sort === 'number' && Number.isFinite(sort))) throw bad('malformed');
    p.sort = sort as Position['sort'];
  }
  return p;
}
