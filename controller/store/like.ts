// SQL LIKE for the in-memory evaluator, without regular expressions: a regex built from a
// pattern of many '%' backtracks exponentially (issue 20: `name~=%%%…b` froze the controller).
// Semantics as SQLite's default LIKE: '%' any run of characters, '_' exactly one character
// (a code point, as SQLite counts UTF-8 characters), ASCII letters case-insensitive, no escape.
//
// The pattern is split at '%' into fixed-length segments. The first must match at the start
// (unless the pattern starts with '%'), the last at the end (unless it ends with '%'), and the
// ones between are taken at their leftmost match in order: a fixed-length segment matched
// further left never leaves less room for the rest, so the greedy choice is exact. Cost:
// O(text length × pattern length) at worst, never exponential.

const WILD = -1;
const lowerAscii = (cp: number): number => (cp >= 65 && cp <= 90 ? cp + 32 : cp);

function codePoints(s: string): number[] {
  const out: number[] = [];
  for (const ch of s) out.push(lowerAscii(ch.codePointAt(0)!));
  return out;
}

/** Does `seg` (WILD = any one character) match `text` at position `at`? */
function matchAt(text: number[], at: number, seg: number[]): boolean {
  if (at < 0 || at + seg.length > text.length) return false;
  for (let i = 0; i < seg.length; i++) {
    const p = seg[i]!;
    if (p !== WILD && p !== text[at + i]) return false;
  }
  return true;
}

function find(text: number[], from: number, to: number, seg: number[]): number {
  for (let at = from; at + seg.length <= to; at++) if (matchAt(text, at, seg)) return at;
  return -1;
}

export type LikeMatcher = (value: string) => boolean;

/** Compile a LIKE pattern into a matcher (linear in the pattern; matching as described above). */
export function likeMatcher(pattern: string): LikeMatcher {
  const segs: number[][] = [[]];
  for (const cp of codePoints(pattern)) {
    if (cp === 37 /* % */) {
      if (segs[segs.length - 1]!.length > 0 || segs.length === 1) segs.push([]);
    } else segs[segs.length - 1]!.push(cp === 95 /* _ */ ? WILD : cp);
  }
  if (segs.length === 1) {
    const only = segs[0]!;
    return (value) => {
      const t = codePoints(value);
      return t.length === only.length && matchAt(t, 0, only);
    };
  }
  // segs: [head, ...middle, tail]; an empty head/tail means the pattern starts/ends with '%'
  const head = segs[0]!;
  const tail = segs[segs.length - 1]!;
  const middle = segs.slice(1, -1).filter((s) => s.length > 0);
  return (value) => {
    const t = codePoints(value);
    if (head.length + tail.length > t.length) return false;
    if (!matchAt(t, 0, head)) return false;
    const tailAt = t.length - tail.length;
    if (!matchAt(t, tailAt, tail)) return false;
    let pos = head.length;
    for (const seg of middle) {
      const at = find(t, pos, tailAt, seg);
      if (at < 0) return false;
      pos = at + seg.length;
    }
    return true;
  };
}

/** Number of wildcard characters ('%' and '_') in a pattern. */
export function wildcardCount(pattern: string): number {
  let n = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charCodeAt(i);
    if (c === 37 || c === 95) n++;
  }
  return n;
}
