// An ordinary C program for the `sosctl run` tests: nothing in it knows about
// ServerlessOS. Usage: workload MODE MIB [SEED]. Every mode prints results
// that depend only on its arguments, so a paged run must print what a plain
// run prints.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static void fill(uint64_t* w, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) w[i] = mix(seed + i);
}

static uint64_t sum(const uint64_t* w, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ w[i]) * 1099511628211ULL;
  return h;
}

static void updates(uint64_t* w, size_t n, size_t count, uint64_t seed) {
  for (size_t k = 0; k < count; k++) w[mix(seed ^ (k * 7919)) % n] += k;
}

struct job {
  size_t words;
  uint64_t seed, out;
};

static void* thread_main(void* arg) {
  struct job* j = arg;
  uint64_t* w = malloc(j->words * 8);
  if (!w) return NULL;
  fill(w, j->words, j->seed);
  updates(w, j->words, j->words / 64, j->seed);
  j->out = sum(w, j->words);
  free(w);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: workload fill|loop|threads|grow|churn|fork|hog MIB [SEED]\n");
    return 2;
  }
  const char* mode = argv[1];
  size_t bytes = (size_t)strtoull(argv[2], NULL, 10) << 20, words = bytes / 8;
  uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(mode, "fill") || !strcmp(mode, "loop") || !strcmp(mode, "hog")) {
    uint64_t* w = malloc(bytes);
    if (!w) {
      perror("malloc");
      return 3;
    }
    fill(w, words, seed);
    updates(w, words, words / 64, seed);
    printf("checksum %016llx\n", (unsigned long long)sum(w, words));
    for (unsigned pass = 1; !strcmp(mode, "loop"); pass++)  // until killed
      printf("pass %u %016llx\n", pass, (unsigned long long)sum(w, words));
    free(w);
  } else if (!strcmp(mode, "threads")) {
    struct job j[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
      j[i] = (struct job){words / 4, seed + (uint64_t)i * 1000003, 0};
      pthread_create(&t[i], NULL, thread_main, &j[i]);
    }
    for (int i = 0; i < 4; i++) {
      pthread_join(t[i], NULL);
      printf("thread %d %016llx\n", i, (unsigned long long)j[i].out);
    }
  } else if (!strcmp(mode, "grow")) {
    // mremap growing an anonymous mapping, then realloc growing a block by doubling.
    size_t q = bytes / 4;
    uint64_t* m = mmap(NULL, q, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 3;
    fill(m, q / 8, seed);
    uint64_t* g = mremap(m, q, bytes, MREMAP_MAYMOVE);
    if (g == MAP_FAILED) {
      perror("mremap");
      return 3;
    }
    fill(g + q / 8, (bytes - q) / 8, seed + 1);
    printf("mremap %016llx\n", (unsigned long long)sum(g, words));
    munmap(g, bytes);
    size_t have = 1 << 20;
    uint64_t* r = malloc(have);
    fill(r, have / 8, seed);
    while (have < bytes / 2) {
      r = realloc(r, have * 2);
      if (!r) return 3;
      fill(r + have / 8, have / 8, seed + have);
      have *= 2;
    }
    printf("realloc %016llx\n", (unsigned long long)sum(r, have / 8));
    free(r);
  } else if (!strcmp(mode, "churn")) {
    // Allocate, check zeroed, fill, free: many times the arena's worth in all.
    uint64_t acc = 0, nonzero = 0;
    for (int round = 0; round < 12; round++) {
      size_t n = words / 4;
      uint64_t* c = calloc(n, 8);
      if (!c) return 3;
      for (size_t i = 0; i < n; i++) nonzero += c[i] != 0;
      fill(c, n, seed + (uint64_t)round);
      acc ^= sum(c, n);
      free(c);
      uint64_t* m = mmap(NULL, bytes / 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      fill(m, bytes / 64, seed);
      madvise(m, bytes / 8, MADV_DONTNEED);  // anonymous memory reads as zeros afterwards
      for (size_t i = 0; i < bytes / 64; i++) nonzero += m[i] != 0;
      munmap(m, bytes / 8);
    }
    printf("churn %016llx nonzero %llu\n", (unsigned long long)acc, (unsigned long long)nonzero);
  } else if (!strcmp(mode, "fork")) {
    uint64_t* w = malloc(bytes);
    fill(w, words, seed);
    pid_t p = fork();
    if (p == 0) {  // a plain fork child that leaves the parent's memory alone
      static const char msg[] = "forked child ok\n";
      (void)!write(1, msg, sizeof msg - 1);
      _exit(0);
    }
    waitpid(p, NULL, 0);
    fflush(stdout);
    p = fork();
    if (p == 0) {  // fork + exec: the child is a paged program of its own
      char half[32];
      snprintf(half, sizeof half, "%zu", (bytes >> 20) / 2);
      execl("/proc/self/exe", "workload", "fill", half, "7", (char*)NULL);
      _exit(127);
    }
    int st = 0;
    waitpid(p, &st, 0);
    printf("exec child status %d\n", WEXITSTATUS(st));
    updates(w, words, words / 64, seed);
    printf("parent %016llx\n", (unsigned long long)sum(w, words));
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  return 0;
}
