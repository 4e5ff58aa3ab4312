// A seeded pseudo-random source for the fuzz children, so that a failing
// seed reproduces exactly.
export function seeded(seed: number) {
  let s = seed;
  const rnd = (): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
  return { rnd, pick };
}
