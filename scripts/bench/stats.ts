// What the benchmarks share: the median they report and the `--runs N` flag.

/** The median of `xs` (the mean of the middle two when their number is even). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** `--runs N` from the command line (at least 1), else `def`. */
export function runsFlag(def: number): number {
  const i = process.argv.indexOf('--runs');
  return i > 0 ? Math.max(1, Number(process.argv[i + 1])) : def;
}
