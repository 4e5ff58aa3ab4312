// The workload of bench/memory's swap part (swap.ts): one ordinary program,
// run unchanged with no limit, under a cgroup memory cap with swap on disk or
// on zram, and under `sosctl run` (its one big malloc lands in the shim's
// arena, as glibc would mmap it).
//
//   swap_workload SIZE_BYTES UPDATES SEED
//
// Fills SIZE bytes with splitmix64 output (incompressible: zram keeps every
// page whole), does UPDATES read-modify-writes of 8-byte words at random
// offsets, then scans every word in order into an FNV-style checksum. Prints
// {"fill_ns":…,"update_ns":…,"scan_ns":…,"checksum":"…"}: the same for the
// same arguments wherever the memory lives.
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t xorshift64(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: swap_workload SIZE_BYTES UPDATES SEED\n");
    return 2;
  }
  uint64_t size = strtoull(argv[1], NULL, 10), updates = strtoull(argv[2], NULL, 10);
  uint64_t seed = strtoull(argv[3], NULL, 10);
  uint64_t n = size / 8;
  if (n == 0) {
    fprintf(stderr, "swap_workload: SIZE_BYTES must be at least 8\n");
    return 2;
  }
  // volatile: every store and load happens as written, none folded away.
  volatile uint64_t *a = malloc(n * 8);
  if (!a) {
    fprintf(stderr, "swap_workload: malloc(%" PRIu64 ") failed\n", n * 8);
    return 1;
  }

  uint64_t t0 = now_ns(), s = seed;
  for (uint64_t i = 0; i < n; i++) a[i] = splitmix64(&s);

  uint64_t t1 = now_ns(), r = seed * 0x2545f4914f6cdd1dull | 1;
  for (uint64_t k = 0; k < updates; k++) {
    uint64_t x = xorshift64(&r);
    uint64_t i = (uint64_t)(((unsigned __int128)x * n) >> 64);  // uniform in [0, n)
    uint64_t v = a[i];
    a[i] = ((v << 17) | (v >> 47)) ^ x;
  }

  uint64_t t2 = now_ns(), h = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < n; i++) h = (h ^ a[i]) * 0x100000001b3ull;
  uint64_t t3 = now_ns();

  printf("{\"fill_ns\":%" PRIu64 ",\"update_ns\":%" PRIu64 ",\"scan_ns\":%" PRIu64 ",\"checksum\":\"%016" PRIx64
         "\"}\n",
         t1 - t0, t2 - t1, t3 - t2, h);
  free((void *)a);
  return 0;
}
