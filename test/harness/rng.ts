// Deterministic pseudo-random numbers for property tests (xorshift32): a failing sequence can be
// replayed from its seed.
export function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}
