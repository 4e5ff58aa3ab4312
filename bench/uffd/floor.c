// The floor for 4 KiB userfaultfd fault service: a minimal C program with one
// plain handler thread. Faulting threads read the first byte of each page of
// their disjoint slice of an anonymous mapping registered MISSING; the
// handler reads uffd_msg and resolves each fault with UFFDIO_COPY from a
// populated source buffer, a window of `batch` pages aligned around the fault
// (as the project's fault engine does).
//
//   uffd_floor SIZE THREADS BATCH [MODE]
//     SIZE     bytes (suffix K, M or G allowed)
//     THREADS  faulting threads (slices are whole windows)
//     BATCH    pages per UFFDIO_COPY window (1 = no prefetch)
//     MODE     read  (default) handler blocks in read(2) on the userfaultfd
//              poll  handler does poll(2) on the userfaultfd and a stop
//                    eventfd, then a non-blocking read (the engine's loop)
//              none  no userfaultfd: ordinary anonymous page faults (the
//                    first access writes, so that each allocates a zeroed
//                    4 KiB page: MADV_NOHUGEPAGE, no shared zero page)
//              ioctl no faults: the main thread fills the region with one
//                    UFFDIO_COPY per window, nobody waiting (the bare ioctl
//                    cost); p50/p99 are per ioctl, THREADS is ignored
//
// Prints one JSON line: pages, elapsed_ns, pages_per_s, p50_ns, p99_ns (per
// first touch, from clock_gettime around the access), and the handler's
// counts (faults read, ioctls) and service time (read returned -> ioctl
// returned) p50/p99.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

enum mode { MODE_READ, MODE_POLL, MODE_NONE, MODE_IOCTL };

static uint8_t *dst, *src;
static uint64_t size, npages, batch;
static int nthreads, uffd = -1, stopfd = -1;
static enum mode mode = MODE_READ;
static uint64_t *touch_ns;    // per page: first-touch latency
static uint64_t *service_ns;  // per fault read: service time
static uint64_t nfaults, nioctls, nexist;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "uffd_floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t parse_size(const char *s) {
  char *end;
  uint64_t v = strtoull(s, &end, 0);
  switch (*end) {
    case 'k':
    case 'K': v <<= 10; break;
    case 'm':
    case 'M': v <<= 20; break;
    case 'g':
    case 'G': v <<= 30; break;
    case 0: break;
    default: fprintf(stderr, "uffd_floor: bad size %s\n", s); exit(2);
  }
  return v;
}

// Copy the aligned window around the fault; skip pages that already exist
// (and wake the faulting thread if its own page was one of them).
static void resolve(uint64_t addr) {
  uint64_t base = (uint64_t)(uintptr_t)dst, page = addr & ~(PAGE - 1);
  uint64_t win = batch * PAGE;
  uint64_t w0 = base + (page - base) / win * win, w1 = w0 + win;
  if (w1 > base + size) w1 = base + size;
  uint64_t cur = w0;
  while (cur < w1) {
    struct uffdio_copy c = {.dst = cur, .src = (uint64_t)(uintptr_t)(src + (cur - base)), .len = w1 - cur, .mode = 0};
    int r = ioctl(uffd, UFFDIO_COPY, &c);
    nioctls++;
    if (r == 0) return;
    uint64_t done = c.copy > 0 ? (uint64_t)c.copy : 0;
    if (errno == EEXIST) {
      nexist++;
      uint64_t existing = cur + done;
      if (existing == page) {
        struct uffdio_range w = {.start = page, .len = PAGE};
        ioctl(uffd, UFFDIO_WAKE, &w);
        nioctls++;
      }
      cur = existing + PAGE;
      continue;
    }
    if (errno == EAGAIN) {  // mm changing: retry the rest
      cur += done;
      continue;
    }
    die("ioctl(UFFDIO_COPY)");
  }
}

static void *handler(void *arg) {
  (void)arg;
  struct uffd_msg msgs[32];
  for (;;) {
    if (mode == MODE_POLL) {
      struct pollfd fds[2] = {{uffd, POLLIN, 0}, {stopfd, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        die("poll");
      }
      if (fds[1].revents) return NULL;
      if (!(fds[0].revents & POLLIN)) continue;
    }
    ssize_t r = read(uffd, msgs, sizeof(msgs));
    uint64_t t0 = now_ns();
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      die("read(userfaultfd)");
    }
    size_t n = (size_t)r / sizeof(msgs[0]);
    for (size_t i = 0; i < n; i++) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      resolve(msgs[i].arg.pagefault.address);
      if (nfaults < npages) service_ns[nfaults] = now_ns() - t0;
      nfaults++;
    }
  }
}

static void *toucher(void *arg) {
  uint64_t t = (uint64_t)(uintptr_t)arg;
  // Slices are whole windows so that no two threads share a window.
  uint64_t wins = npages / batch;
  uint64_t lo = wins * t / nthreads * batch, hi = wins * (t + 1) / nthreads * batch;
  if (t + 1 == (uint64_t)nthreads) hi = npages;
  uint64_t sum = 0;
  for (uint64_t p = lo; p < hi; p++) {
    volatile uint8_t *a = dst + p * PAGE;
    uint64_t s = now_ns();
    if (mode == MODE_NONE)
      *a = 1;
    else
      sum += *a;
    touch_ns[p] = now_ns() - s;
  }
  return (void *)(uintptr_t)sum;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

// Nearest-rank percentile of a sorted array.
static uint64_t pct(const uint64_t *v, uint64_t n, double p) {
  if (!n) return 0;
  uint64_t k = (uint64_t)(p * (double)n + 0.5);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return v[k - 1];
}

// MODE_IOCTL: one UFFDIO_COPY per window, timed, with no faulting thread.
static int ioctl_cost(void) {
  uint64_t wins = (npages + batch - 1) / batch, t0 = now_ns();
  for (uint64_t w = 0; w < wins; w++) {
    uint64_t off = w * batch * PAGE, len = batch * PAGE;
    if (off + len > size) len = size - off;
    struct uffdio_copy c = {
        .dst = (uint64_t)(uintptr_t)(dst + off), .src = (uint64_t)(uintptr_t)(src + off), .len = len, .mode = 0};
    uint64_t s = now_ns();
    if (ioctl(uffd, UFFDIO_COPY, &c)) die("ioctl(UFFDIO_COPY)");
    touch_ns[w] = now_ns() - s;
  }
  uint64_t elapsed = now_ns() - t0;
  qsort(touch_ns, wins, sizeof(uint64_t), cmp_u64);
  printf(
      "{\"pages\":%llu,\"elapsed_ns\":%llu,\"pages_per_s\":%.1f,\"p50_ns\":%llu,\"p99_ns\":%llu,"
      "\"batch\":%llu,\"mode\":\"ioctl\",\"ioctls\":%llu}\n",
      (unsigned long long)npages, (unsigned long long)elapsed, (double)npages * 1e9 / (double)elapsed,
      (unsigned long long)pct(touch_ns, wins, 0.5), (unsigned long long)pct(touch_ns, wins, 0.99),
      (unsigned long long)batch, (unsigned long long)wins);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s SIZE THREADS BATCH [read|poll|none|ioctl]\n", argv[0]);
    return 2;
  }
  size = parse_size(argv[1]);
  nthreads = atoi(argv[2]);
  batch = strtoull(argv[3], NULL, 0);
  if (argc > 4) {
    if (!strcmp(argv[4], "read"))
      mode = MODE_READ;
    else if (!strcmp(argv[4], "poll"))
      mode = MODE_POLL;
    else if (!strcmp(argv[4], "none"))
      mode = MODE_NONE;
    else if (!strcmp(argv[4], "ioctl"))
      mode = MODE_IOCTL;
    else {
      fprintf(stderr, "uffd_floor: mode must be read, poll, none or ioctl\n");
      return 2;
    }
  }
  if (size < PAGE || size % PAGE || nthreads < 1 || nthreads > 256 || batch < 1 || batch > 512) {
    fprintf(stderr, "uffd_floor: SIZE must be a positive multiple of 4096, THREADS 1..256, BATCH 1..512\n");
    return 2;
  }
  npages = size / PAGE;

  // Same mappings as the addon's anonymous regions.
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  src = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
  dst = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (src == MAP_FAILED || dst == MAP_FAILED) die("mmap");
  if (mode == MODE_NONE && madvise(dst, size, MADV_NOHUGEPAGE)) die("madvise");
  for (uint64_t p = 0; p < npages; p++) memset(src + p * PAGE, (int)(p % 251) + 1, PAGE);
  touch_ns = calloc(npages, sizeof(uint64_t));
  service_ns = calloc(npages, sizeof(uint64_t));
  if (!touch_ns || !service_ns) die("calloc");

  pthread_t h;
  if (mode != MODE_NONE) {
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | (mode == MODE_POLL ? O_NONBLOCK : 0));
    if (uffd < 0) die("userfaultfd");
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID};
    if (ioctl(uffd, UFFDIO_API, &api)) die("UFFDIO_API");
    struct uffdio_register reg = {.range = {.start = (uint64_t)(uintptr_t)dst, .len = size},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg)) die("UFFDIO_REGISTER");
    stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stopfd < 0) die("eventfd");
    if (mode != MODE_IOCTL && pthread_create(&h, NULL, handler, NULL)) die("pthread_create");
  }
  if (mode == MODE_IOCTL) return ioctl_cost();

  pthread_t *ts = calloc((size_t)nthreads, sizeof(pthread_t));
  uint64_t t0 = now_ns();
  for (int t = 0; t < nthreads; t++)
    if (pthread_create(&ts[t], NULL, toucher, (void *)(uintptr_t)t)) die("pthread_create");
  uint64_t sum = 0;
  for (int t = 0; t < nthreads; t++) {
    void *r;
    pthread_join(ts[t], &r);
    sum += (uint64_t)(uintptr_t)r;
  }
  uint64_t elapsed = now_ns() - t0;

  if (mode != MODE_NONE) {
    if (mode == MODE_POLL) {
      uint64_t one = 1;
      if (write(stopfd, &one, sizeof(one)) != sizeof(one)) die("write(eventfd)");
    } else {
      pthread_cancel(h);  // idle in read(2), a cancellation point
    }
    pthread_join(h, NULL);
  }

  // Check the contents: every page came from the source.
  uint64_t want = 0;
  for (uint64_t p = 0; p < npages && mode != MODE_NONE; p++) want += (p % 251) + 1;
  if (sum != want) {
    fprintf(stderr, "uffd_floor: content check failed (sum %llu, want %llu)\n", (unsigned long long)sum,
            (unsigned long long)want);
    return 1;
  }

  qsort(touch_ns, npages, sizeof(uint64_t), cmp_u64);
  uint64_t nserv = nfaults < npages ? nfaults : npages;
  qsort(service_ns, nserv, sizeof(uint64_t), cmp_u64);
  uint64_t total = 0;
  for (uint64_t p = 0; p < npages; p++) total += touch_ns[p];
  static const char *names[] = {"read", "poll", "none", "ioctl"};
  printf(
      "{\"pages\":%llu,\"elapsed_ns\":%llu,\"pages_per_s\":%.1f,\"p50_ns\":%llu,\"p99_ns\":%llu,"
      "\"mean_ns\":%.1f,\"max_ns\":%llu,\"threads\":%d,\"batch\":%llu,\"mode\":\"%s\",\"faults\":%llu,"
      "\"ioctls\":%llu,\"exists\":%llu,\"service_p50_ns\":%llu,\"service_p99_ns\":%llu}\n",
      (unsigned long long)npages, (unsigned long long)elapsed, (double)npages * 1e9 / (double)elapsed,
      (unsigned long long)pct(touch_ns, npages, 0.5), (unsigned long long)pct(touch_ns, npages, 0.99),
      (double)total / (double)npages, (unsigned long long)touch_ns[npages - 1], nthreads, (unsigned long long)batch,
      names[mode], (unsigned long long)nfaults, (unsigned long long)nioctls, (unsigned long long)nexist,
      (unsigned long long)pct(service_ns, nserv, 0.5), (unsigned long long)pct(service_ns, nserv, 0.99));
  return 0;
}
