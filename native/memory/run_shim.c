// The preload shim of `sosctl run` (lib/memory/run.ts): loaded into an
// unmodified program with LD_PRELOAD, it puts the program's large anonymous
// memory in one arena, a MAP_SHARED memfd mapping registered with a
// userfaultfd, and hands both to the monitor, whose pager serves the faults
// and drops pages from its own mapping of the memfd (MADV_REMOVE frees them
// from every mapping: a monitor cannot drop a private page of another
// process). What enters the arena: every anonymous private writable mmap of
// 64 KiB or more made through libc's mmap (pymalloc arenas, V8 pages,
// jemalloc chunks) and every malloc-family block of 128 KiB or more (glibc
// supports replacing malloc: its own internal calls come here too). Smaller
// blocks stay in libc's heap, unpaged. Trade-offs: docs/memory-run.md.
//
// Protocol (one line each way, over a unix stream socket named by
// SOS_RUN_SOCK; one request at a time, under the arena lock):
//   hello <pid> <uffd fd> <memfd fd> <arena address> <arena bytes> <features>
//       -> ok | err <message>   (the monitor takes both fds with pidfd_getfd)
//   discard <offset> <bytes>    -> ok   (freed: the pages read as zeros again)
//
// Hand-over (a checkpoint, a migration): the shim listens on the abstract
// unix socket "sos-run-shim/<SOS_RUN_NAME>/<pid>" (its network namespace's,
// kept by CRIU); a
// monitor of the same uid connects there and says, one line each:
//   detach  -> gated | err <message>   every other thread parked, nothing faults
//   release -> released   the userfaultfd and the monitor's socket closed
//   resume  -> ok         (instead of release) the detach called off
//   attach  -> hello ...  (once released, e.g. after a restore) a new
//              userfaultfd registered; the monitor's ok ends the park and
//              this connection becomes the monitor socket.
// node-gyp builds with _FILE_OFFSET_BITS=64, which would name our mmap mmap64: both are defined below.
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

// The distro header predates some of these.
#define SHIM_FEATURE_PAGEFAULT_FLAG_WP (1ULL << 0)
#define SHIM_FEATURE_MISSING_SHMEM (1ULL << 5)
#define SHIM_FEATURE_WP_HUGETLBFS_SHMEM (1ULL << 12)
#define SHIM_FEATURE_POISON (1ULL << 14)

#define PAGE 4096UL
#define MAP_LARGE (64UL << 10)
#define MALLOC_LARGE (128UL << 10)
#define EXPORT __attribute__((visibility("default")))

// ---- libc's allocator, found with dlsym; dlsym's own calloc is served from
// a static buffer meanwhile.
static void* (*real_malloc)(size_t);
static void (*real_free)(void*);
static void* (*real_calloc)(size_t, size_t);
static void* (*real_realloc)(void*, size_t);
static void* (*real_memalign)(size_t, size_t);
static size_t (*real_usable)(void*);
static char boot[16384] __attribute__((aligned(16)));
static size_t boot_used;
static __thread int resolving;

static int in_boot(const void* p) { return (const char*)p >= boot && (const char*)p < boot + sizeof boot; }

static void* boot_alloc(size_t n) {
  n = (n + 15) & ~15UL;
  if (boot_used + n > sizeof boot) return NULL;
  void* p = boot + boot_used;
  boot_used += n;
  return p;  // zero: static storage, never reused
}

static void resolve(void) {
  if (real_malloc || resolving) return;
  resolving = 1;
  real_free = (void (*)(void*))dlsym(RTLD_NEXT, "free");
  real_calloc = (void* (*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
  real_realloc = (void* (*)(void*, size_t))dlsym(RTLD_NEXT, "realloc");
  real_memalign = (void* (*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
  real_usable = (size_t(*)(void*))dlsym(RTLD_NEXT, "malloc_usable_size");
  void* m = dlsym(RTLD_NEXT, "malloc");
  __atomic_store_n(&real_malloc, (void* (*)(size_t))m, __ATOMIC_RELEASE);
  resolving = 0;
}

// ---- The arena: a bitmap of used pages, and each malloc block's length in
// pages at its first page (0: not a block start).
enum { kUnset = 0, kReady = 1, kOff = 2, kFailed = 3, kDetached = 4 };
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int state = kUnset;
static uintptr_t lo, hi;  // the arena, set once before any pointer into it is returned
static size_t npages, hint;
static uint64_t* used;
static uint32_t* blocks;
static int sock = -1, uffd = -1, arena_fd = -1, ctl = -1;
static unsigned long long arena_features;
static char failure[640];

static long raw_mmap(void* a, size_t l, int p, int f, int fd, off_t o) { return syscall(SYS_mmap, a, l, p, f, fd, o); }
static int in_arena(const void* p) { return (uintptr_t)p >= lo && (uintptr_t)p < hi; }
static int bit(size_t i) { return (used[i / 64] >> (i % 64)) & 1; }
static void set_bits(size_t i, size_t n, int on) {
  for (size_t k = i; k < i + n; k++) {
    if (on)
      used[k / 64] |= 1ULL << (k % 64);
    else
      used[k / 64] &= ~(1ULL << (k % 64));
  }
}

static void say(const char* msg) {
  char line[768];
  int n = snprintf(line, sizeof line, "sosctl run: %s\n", msg);
  if (n > 0) (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

// The monitor is gone: its faults would never be served. Stop at once.
static void monitor_lost(void) {
  say("the paging monitor is gone; stopping the program");
  kill(getpid(), SIGKILL);
}

// The whole of line on fd; 0, or -1 when the peer is gone.
static int send_line(int fd, const char* line) {
  size_t n = strlen(line);
  while (n) {
    ssize_t r = send(fd, line, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    line += r;
    n -= (size_t)r;
  }
  return 0;
}

// One line from fd, without its newline; ms: how long the peer may be silent
// (-1: as long as it keeps the connection). 0, 1 when cut at cap, -1 when gone.
static int read_line(int fd, char* line, size_t cap, int ms) {
  size_t n = 0;
  while (n + 1 < cap) {
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    ssize_t k = read(fd, line + n, 1);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    if (line[n] == '\n') break;
    n++;
  }
  line[n] = 0;
  return n + 1 < cap ? 0 : 1;
}

// One request, one reply line (mu held).
static int ask(const char* req, char* reply, size_t cap) {
  if (send_line(sock, req) != 0) return -1;
  return read_line(sock, reply, cap, -1) < 0 ? -1 : 0;  // a reply cut at cap is still its answer
}

// fork: the arena is MADV_DONTFORK (a shared mapping would make the child's
// writes the parent's), so a child has none; it keeps no connection either.
static void before_fork(void) { pthread_mutex_lock(&mu); }
static void after_fork_parent(void) { pthread_mutex_unlock(&mu); }
static void after_fork_child(void) {
  pthread_mutex_init(&mu, NULL);
  if (state == kReady || state == kDetached) {
    if (sock >= 0) close(sock);
    if (uffd >= 0) close(uffd);
    if (ctl >= 0) close(ctl);
    if (arena_fd >= 0) close(arena_fd);
    sock = uffd = ctl = arena_fd = -1;
    state = kOff;
  }
}

static void fail(const char* what) {
  snprintf(failure, sizeof failure, "%s", what);
  say(failure);
  state = kFailed;
}

// A userfaultfd with the arena registered (missing and write-protect), or
// -1 with the reason in msg. Without POISON if the kernel has none (API is
// once per descriptor: a fresh one is tried).
static int new_uffd(uintptr_t a, size_t bytes, unsigned long long* features, char* msg, size_t cap) {
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    snprintf(msg, cap, "userfaultfd: %s (root, or vm.unprivileged_userfaultfd=1, is needed)", strerror(errno));
    return -1;
  }
  struct uffdio_api api = {UFFD_API,
                           SHIM_FEATURE_PAGEFAULT_FLAG_WP | SHIM_FEATURE_MISSING_SHMEM |
                               SHIM_FEATURE_WP_HUGETLBFS_SHMEM | SHIM_FEATURE_POISON,
                           0};
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    close(fd);
    fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    api = (struct uffdio_api){
        UFFD_API, SHIM_FEATURE_PAGEFAULT_FLAG_WP | SHIM_FEATURE_MISSING_SHMEM | SHIM_FEATURE_WP_HUGETLBFS_SHMEM, 0};
    if (fd < 0 || ioctl(fd, UFFDIO_API, &api) != 0) {
      snprintf(msg, cap, "UFFDIO_API: shared-memory write-protect unsupported (%s)", strerror(errno));
      if (fd >= 0) close(fd);
      return -1;
    }
  }
  struct uffdio_register reg = {{(uint64_t)a, bytes}, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, 0};
  if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
    snprintf(msg, cap, "UFFDIO_REGISTER of the arena: %s", strerror(errno));
    close(fd);
    return -1;
  }
  *features = (unsigned long long)api.features;
  return fd;
}

// ---- Hand-over. Parking: every thread but the control thread waits in a
// signal handler until the gate opens, so nothing touches the arena while it
// has no userfaultfd (its pages would read as zeros). A signal, not
// PROT_NONE: a syscall on arena memory would fail with EFAULT instead of
// waiting. The handler is installed only while parking.
static int gate, parked;
static struct sigaction park_old;
static int park_sig(void) { return SIGRTMAX - 3; }
static long futex(int* w, int op, int v, const struct timespec* t) { return syscall(SYS_futex, w, op, v, t, NULL, 0); }

static void park_handler(int sig, siginfo_t* si, void* uc) {
  (void)sig, (void)si, (void)uc;
  int saved = errno;
  __atomic_add_fetch(&parked, 1, __ATOMIC_SEQ_CST);
  futex(&parked, FUTEX_WAKE, 1, NULL);
  while (__atomic_load_n(&gate, __ATOMIC_SEQ_CST)) futex(&gate, FUTEX_WAIT, 1, NULL);
  __atomic_sub_fetch(&parked, 1, __ATOMIC_SEQ_CST);
  futex(&parked, FUTEX_WAKE, 1, NULL);
  errno = saved;
}

struct linux_dirent64 {
  uint64_t ino;
  int64_t off;
  unsigned short reclen;
  unsigned char type;
  char name[];
};

// A thread's id in our own PID namespace: /proc may be the host's (a
// workload is pid 1 of its own namespace under the node's /proc), and
// tgkill takes ids of ours. The last field of its status's NSpid line.
static pid_t ns_tid(const char* name) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/self/task/%s/status", name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char* line = strstr(buf, "\nNSpid:");
  if (!line) return (pid_t)atoi(name);  // no PID namespaces: the same id
  line += 7;
  char* end = strchr(line, '\n');
  if (end) *end = 0;
  char* last = strrchr(line, '\t');
  if (!last) last = strrchr(line, ' ');
  return (pid_t)atoi(last ? last + 1 : line);
}

// Signal every thread not signalled yet (tids in sent[0..*n)); -1 when more
// than cap threads. getdents, not opendir: no allocation under mu.
static int signal_threads(pid_t* sent, int* n, int cap) {
  int dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  char buf[4096];
  pid_t self = (pid_t)syscall(SYS_gettid);
  long got;
  int r = 0;
  while ((got = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
    for (long off = 0; off < got;) {
      struct linux_dirent64* d = (struct linux_dirent64*)(buf + off);
      off += d->reclen;
      if (d->name[0] < '0' || d->name[0] > '9') continue;
      pid_t tid = ns_tid(d->name);
      if (tid <= 0) continue;  // exited meanwhile
      int known = tid == self;
      for (int i = 0; i < *n && !known; i++) known = sent[i] == tid;
      if (known) continue;
      if (*n == cap) {
        r = -1;
        break;
      }
      if (syscall(SYS_tgkill, getpid(), tid, park_sig()) == 0)
        sent[(*n)++] = tid;
      else if (errno != ESRCH)  // one we cannot stop: no detach
        r = -1;
    }
  }
  close(dir);
  return r;
}

// Open the gate; restore: every signalled thread parked (and none can take the
// signal later), so the program's own action comes back. After a failed park
// a thread may still have the signal pending: ours stays (it returns at once
// with the gate open), where the default action would end the program.
static void unpark(int restore) {
  __atomic_store_n(&gate, 0, __ATOMIC_SEQ_CST);
  futex(&gate, FUTEX_WAKE, 1 << 30, NULL);
  int p;
  while ((p = __atomic_load_n(&parked, __ATOMIC_SEQ_CST)) > 0) futex(&parked, FUTEX_WAIT, p, NULL);
  if (restore) sigaction(park_sig(), &park_old, NULL);
}

// Park every other thread (mu held); 0, or -1 with the reason in msg (then none is parked).
static int park(char* msg, size_t cap) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = park_handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  __atomic_store_n(&gate, 1, __ATOMIC_SEQ_CST);
  if (sigaction(park_sig(), &sa, &park_old) != 0) {
    snprintf(msg, cap, "sigaction: %s", strerror(errno));
    return -1;
  }
  static pid_t sent[4096];
  int n = 0, before = -1;
  while (n != before) {  // until no new thread shows up
    before = n;
    if (signal_threads(sent, &n, 4096) != 0) {
      snprintf(msg, cap, "cannot list or signal the program's threads");
      unpark(0);
      return -1;
    }
    // Each signalled thread parks at once unless it blocks the signal: 5 s at most.
    for (int waits = 0; __atomic_load_n(&parked, __ATOMIC_SEQ_CST) < n; waits++) {
      int p = __atomic_load_n(&parked, __ATOMIC_SEQ_CST);
      struct timespec t = {0, 10 * 1000 * 1000};
      if (waits == 500) {
        snprintf(msg, cap, "%d of %d threads parked: one blocks signal %d or exited", p, n, park_sig());
        unpark(0);
        return -1;
      }
      futex(&parked, FUTEX_WAIT, p, &t);
    }
  }
  return 0;
}

// A hand-over request or answer: a whole line, or nothing (-1).
static int ctl_line(int c, char* line, size_t cap, int ms) { return read_line(c, line, cap, ms) == 0 ? 0 : -1; }
static void ctl_say(int c, const char* line) { (void)send_line(c, line); }

static int control_socket(void) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct sockaddr_un sa = {AF_UNIX, {0}};
  // Named by the monitor's SOS_RUN_NAME and our pid in our own PID namespace: unique in the network
  // namespace (workloads of one node each have a PID namespace of their own), and the same after a
  // restore, which keeps both.
  const char* name = getenv("SOS_RUN_NAME");
  snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "sos-run-shim/%s/%d", name ? name : "", getpid());
  // The whole sun_path, NUL-padded: the name node's net.connect('\0sos-run-shim/<pid>') asks for.
  if (bind(s, (struct sockaddr*)&sa, sizeof sa) != 0 || listen(s, 4) != 0) {
    char m[160];
    snprintf(m, sizeof m, "no hand-over socket (%s): this process cannot be checkpointed", strerror(errno));
    say(m);
    close(s);
    return -1;
  }
  return s;
}

// detach: park, then release or resume as the monitor says (mu held throughout a detach).
static void ctl_detach(int c) {
  char msg[300], line[64];
  if (state != kReady) return ctl_say(c, "err the arena is not served\n");
  pthread_mutex_lock(&mu);
  if (park(msg, sizeof msg - 6) != 0) {
    pthread_mutex_unlock(&mu);
    char out[320];
    snprintf(out, sizeof out, "err %s\n", msg);
    return ctl_say(c, out);
  }
  ctl_say(c, "gated\n");
  // Unparked only by resume, or the monitor gone (its pages then served by nobody: the watch below
  // stops the program once the monitor socket closes): a slow write-back is no reason to go on.
  if (ctl_line(c, line, sizeof line, -1) == 0 && strcmp(line, "release") == 0) {
    close(uffd);
    close(sock);
    uffd = sock = -1;
    state = kDetached;  // parked, mu held, until an attach
    ctl_say(c, "released\n");
    return;
  }
  unpark(1);  // resume, or the monitor went away: as before
  pthread_mutex_unlock(&mu);
  ctl_say(c, "ok\n");
}

// attach (detached): a new userfaultfd for the new monitor; 1 when c is now the monitor socket.
static int ctl_attach(int c) {
  char msg[300], line[64];
  if (state != kDetached) {
    ctl_say(c, "err the arena is not detached\n");
    return 0;
  }
  unsigned long long features = 0;
  int fd = new_uffd(lo, hi - lo, &features, msg, sizeof msg);
  if (fd < 0) {
    char out[320];
    snprintf(out, sizeof out, "err %s\n", msg);
    ctl_say(c, out);
    return 0;
  }
  char hello[200];
  snprintf(hello, sizeof hello, "hello %d %d %d %lu %llu %llu\n", getpid(), fd, arena_fd, (unsigned long)lo,
           (unsigned long long)(hi - lo), features);
  ctl_say(c, hello);
  if (ctl_line(c, line, sizeof line, -1) != 0 || strcmp(line, "ok") != 0) {
    close(fd);  // refused or gone: still detached, for another monitor
    return 0;
  }
  uffd = fd;
  sock = c;
  arena_features = features;
  state = kReady;
  unpark(1);
  pthread_mutex_unlock(&mu);
  return 1;
}

// Only a peer of our uid (or root) may steer the arena.
static int ctl_peer_ok(int c) {
  struct ucred cr;
  socklen_t l = sizeof cr;
  return getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &l) == 0 && (cr.uid == 0 || cr.uid == getuid());
}

// The control thread: watches the monitor socket (gone: the program stops)
// and serves hand-over requests on the control socket.
static void* control(void* arg) {
  (void)arg;
  for (;;) {
    struct pollfd p[2] = {{sock, POLLRDHUP, 0}, {ctl, POLLIN, 0}};
    int r = poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (sock >= 0 && (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) monitor_lost();
    if (!(p[1].revents & POLLIN)) {
      if (ctl < 0 && sock < 0) break;
      continue;
    }
    int c = accept4(ctl, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) continue;
    char line[64];
    int kept = 0;
    if (ctl_peer_ok(c) && ctl_line(c, line, sizeof line, 30000) == 0) {  // silent 30 s: gone
      if (strcmp(line, "detach") == 0)
        ctl_detach(c);
      else if (strcmp(line, "attach") == 0)
        kept = ctl_attach(c);
      else
        ctl_say(c, "err unknown request\n");
    }
    if (!kept) close(c);
  }
  if (sock >= 0) monitor_lost();
  return NULL;
}

// Attach to the monitor (mu held), on the first large allocation.
static void attach(void) {
  const char* path = getenv("SOS_RUN_SOCK");
  const char* size = getenv("SOS_RUN_ARENA");
  if (!path || !size) {
    state = kOff;
    return;
  }
  char msg[600];
  unsigned long long bytes = strtoull(size, NULL, 10) & ~(PAGE - 1);
  if (bytes < PAGE || bytes > (1ULL << 46)) return fail("SOS_RUN_ARENA is not a size in bytes");
  int mfd = (int)syscall(SYS_memfd_create, "sos-arena", MFD_CLOEXEC);
  if (mfd < 0 || ftruncate(mfd, (off_t)bytes) != 0) {
    snprintf(msg, sizeof msg, "memfd for the arena: %s", strerror(errno));
    return fail(msg);
  }
  long a = raw_mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mfd, 0);
  size_t np = bytes / PAGE;
  long u =
      raw_mmap(NULL, (np / 64 + 1) * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  long b = raw_mmap(NULL, np * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a == -1 || u == -1 || b == -1) {
    close(mfd);
    return fail("cannot map the arena");
  }
  syscall(SYS_madvise, (void*)a, bytes, MADV_DONTFORK);
  syscall(SYS_madvise, (void*)a, bytes, MADV_NOHUGEPAGE);
  unsigned long long features = 0;
  int fd = new_uffd((uintptr_t)a, bytes, &features, msg, sizeof msg);
  if (fd < 0) {
    close(mfd);
    return fail(msg);
  }
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {AF_UNIX, {0}};
  // "@name": an abstract socket (NUL-padded, as node's net names it), the monitor of whichever
  // network namespace the process is in: sosd's, also after a migration to another node.
  if (path[0] == '@')
    snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "%s", path + 1);
  else
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (s < 0 || connect(s, (struct sockaddr*)&sa, sizeof sa) != 0) {
    snprintf(msg, sizeof msg, "cannot reach the paging monitor at %s: %s", path, strerror(errno));
    if (s >= 0) close(s);
    close(fd);
    close(mfd);
    return fail(msg);
  }
  sock = s;
  char req[200], reply[600];
  snprintf(req, sizeof req, "hello %d %d %d %lu %llu %llu\n", getpid(), fd, mfd, (unsigned long)a, bytes, features);
  int r = ask(req, reply, sizeof reply);
  if (r != 0 || strncmp(reply, "ok", 2) != 0) {
    close(sock);
    close(fd);
    close(mfd);
    sock = -1;
    syscall(SYS_munmap, (void*)a, bytes);
    return fail(r != 0 ? "the paging monitor closed the connection" : reply + (strncmp(reply, "err ", 4) ? 0 : 4));
  }
  // Kept, close-on-exec: should the monitor die, faults wait (and the watcher
  // ends the program) rather than the kernel unregistering the arena, whose
  // evicted pages would then read as zeros. A checkpoint must drop it first
  // (CRIU cannot dump a userfaultfd): docs/memory-run.md.
  uffd = fd;
  arena_fd = mfd;  // kept for a hand-over's new monitor (and CRIU dumps the memfd with it)
  arena_features = features;
  used = (uint64_t*)u;
  blocks = (uint32_t*)b;
  npages = np;
  lo = (uintptr_t)a;
  hi = lo + bytes;
  state = kReady;
  pthread_atfork(before_fork, after_fork_parent, after_fork_child);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the watcher takes none of the program's signals
  ctl = control_socket();
  pthread_t t;
  if (pthread_create(&t, NULL, control, NULL) == 0) pthread_detach(t);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

// Free pages nobody uses, n of them, the first a multiple of align (mu held).
static long find_run(size_t n, size_t align) {
  for (int pass = 0; pass < 2; pass++) {
    size_t from = pass ? 0 : hint, to = pass ? hint + n : npages;
    if (to > npages) to = npages;
    size_t i = (from + align - 1) / align * align;
    while (i + n <= to) {
      if (i % 64 == 0 && used[i / 64] == ~0ULL) {
        i += 64;
        continue;
      }
      if (bit(i)) {
        i = (i + align) / align * align;
        continue;
      }
      size_t j = i;
      while (j < i + n) {
        if (j % 64 == 0 && j + 64 <= i + n && used[j / 64] == 0) {
          j += 64;
          continue;
        }
        if (bit(j)) break;
        j++;
      }
      if (j == i + n) return (long)i;
      i = (j + 1 + align - 1) / align * align;
    }
  }
  return -1;
}

static void* take(size_t bytes, size_t align) {
  if (state == kUnset) attach();
  if (state == kOff) return NULL;
  if (state == kFailed) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  size_t n = (bytes + PAGE - 1) / PAGE, al = align > PAGE ? align / PAGE : 1;
  long i = find_run(n, al);
  if (i < 0) {
    char m[200];
    snprintf(m, sizeof m, "far memory exhausted: %zu bytes asked for, the arena holds %zu (raise --far-size)", bytes,
             npages * PAGE);
    say(m);
    errno = ENOMEM;
    return MAP_FAILED;
  }
  set_bits((size_t)i, n, 1);
  hint = (size_t)i + n;
  return (void*)(lo + (size_t)i * PAGE);
}

// Give pages back (mu held): the monitor forgets them first, so they are
// zeros when next handed out.
static void give(uintptr_t a, size_t len) {
  size_t first = (a - lo) / PAGE, n = (len + PAGE - 1) / PAGE;
  if (first + n > npages) n = npages - first;
  if (state == kReady) {
    char req[100], reply[64];
    snprintf(req, sizeof req, "discard %zu %zu\n", first * PAGE, n * PAGE);
    if (ask(req, reply, sizeof reply) != 0) monitor_lost();
    set_bits(first, n, 0);
  }
  for (size_t k = first; k < first + n; k++) blocks[k] = 0;
}

// A pointer from the arena, or NULL to have libc serve the call.
static void* arena_block(size_t bytes, size_t align) {
  if (bytes < MALLOC_LARGE || state == kOff || bytes > (1ULL << 46)) return NULL;
  pthread_mutex_lock(&mu);
  void* p = take(bytes, align);
  if (p && p != MAP_FAILED) blocks[((uintptr_t)p - lo) / PAGE] = (uint32_t)((bytes + PAGE - 1) / PAGE);
  pthread_mutex_unlock(&mu);
  return p;
}
#define BLOCK_OR(call)                 \
  do {                                 \
    void* p_ = arena_block(n, 0);      \
    if (p_ == MAP_FAILED) return NULL; \
    if (p_) return p_;                 \
    return call;                       \
  } while (0)

static size_t block_bytes(const void* p) {
  pthread_mutex_lock(&mu);
  size_t n = state == kReady ? (size_t)blocks[((uintptr_t)p - lo) / PAGE] * PAGE : 0;
  pthread_mutex_unlock(&mu);
  return n;
}

EXPORT void* malloc(size_t n) {
  resolve();
  if (!real_malloc) return boot_alloc(n);
  BLOCK_OR(real_malloc(n));
}

EXPORT void free(void* p) {
  if (!p || in_boot(p)) return;
  if (in_arena(p)) {
    pthread_mutex_lock(&mu);
    size_t first = ((uintptr_t)p - lo) / PAGE;
    if (state == kReady && blocks[first]) give((uintptr_t)p, (size_t)blocks[first] * PAGE);
    pthread_mutex_unlock(&mu);
    return;
  }
  resolve();
  if (real_free) real_free(p);
}

EXPORT void* calloc(size_t a, size_t b) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  resolve();
  if (!real_calloc) return boot_alloc(n);
  BLOCK_OR(real_calloc(a, b));  // arena pages come zeroed
}

EXPORT size_t malloc_usable_size(void* p) {
  if (!p) return 0;
  if (in_arena(p)) return block_bytes(p);
  resolve();
  return in_boot(p) ? 0 : real_usable(p);
}

EXPORT void* realloc(void* p, size_t n) {
  resolve();
  if (!p) return malloc(n);
  if (!real_malloc || in_boot(p)) {  // during dlsym: a fresh copy
    void* q = malloc(n);
    if (q && in_boot(p))
      memcpy(q, p, n < (size_t)(boot + sizeof boot - (char*)p) ? n : (size_t)(boot + sizeof boot - (char*)p));
    return q;
  }
  if (n == 0) {
    free(p);
    return NULL;
  }
  if (!in_arena(p)) {
    if (n < MALLOC_LARGE || state == kOff) return real_realloc(p, n);
    void* q = arena_block(n, 0);
    if (q == MAP_FAILED) return NULL;
    if (!q) return real_realloc(p, n);
    size_t old = real_usable(p);
    memcpy(q, p, old < n ? old : n);
    real_free(p);
    return q;
  }
  pthread_mutex_lock(&mu);
  size_t first = ((uintptr_t)p - lo) / PAGE, have = blocks[first], want = (n + PAGE - 1) / PAGE;
  if (state != kReady || !have) {
    pthread_mutex_unlock(&mu);
    errno = EINVAL;
    return NULL;
  }
  if (want <= have) {  // shrink in place
    if (want < have) give(lo + (first + want) * PAGE, (have - want) * PAGE);
    blocks[first] = (uint32_t)want;
    pthread_mutex_unlock(&mu);
    return p;
  }
  size_t k = first + have;
  while (k < first + want && k < npages && !bit(k)) k++;
  if (k == first + want) {  // grow in place: the pages after it are free
    set_bits(first + have, want - have, 1);
    blocks[first] = (uint32_t)want;
    pthread_mutex_unlock(&mu);
    return p;
  }
  pthread_mutex_unlock(&mu);
  void* q = malloc(n);
  if (!q) return NULL;
  memcpy(q, p, have * PAGE < n ? have * PAGE : n);
  free(p);
  return q;
}

EXPORT void* reallocarray(void* p, size_t a, size_t b) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, n);
}

EXPORT void* memalign(size_t align, size_t n) {
  resolve();
  if (!real_memalign) return boot_alloc(n);
  void* p = arena_block(n, align);
  if (p == MAP_FAILED) return NULL;
  return p ? p : real_memalign(align, n);
}
EXPORT void* aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
EXPORT int posix_memalign(void** out, size_t align, size_t n) {
  if (align < sizeof(void*) || (align & (align - 1))) return EINVAL;
  void* p = memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
EXPORT void* valloc(size_t n) { return memalign(PAGE, n); }
EXPORT void* pvalloc(size_t n) { return memalign(PAGE, (n + PAGE - 1) & ~(PAGE - 1)); }

// ---- mmap and friends: large anonymous private writable mappings.
static int eligible(void* addr, size_t len, int prot, int flags, int fd) {
  (void)addr;
  return len >= MAP_LARGE && (flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE &&
         !(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_HUGETLB | MAP_GROWSDOWN | MAP_STACK)) &&
         (prot & PROT_WRITE) && state != kOff && fd == -1;
}

// syscall() gives -1 with errno set on failure.
static void* sys_result(long r) { return r == -1 ? MAP_FAILED : (void*)r; }

EXPORT void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (eligible(addr, len, prot, flags, fd)) {
    pthread_mutex_lock(&mu);
    void* p = take(len, 0);
    pthread_mutex_unlock(&mu);
    if (p == MAP_FAILED) return MAP_FAILED;
    if (p) {
      if (prot != (PROT_READ | PROT_WRITE)) syscall(SYS_mprotect, p, (len + PAGE - 1) & ~(PAGE - 1), prot);
      return p;
    }
  }
  if ((flags & MAP_FIXED) && in_arena(addr)) {
    // Over arena pages (a decommit): they become fresh zeros, as a new anonymous mapping would be.
    if (!((flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE) || (uintptr_t)addr % PAGE ||
        (uintptr_t)addr + len > hi) {
      errno = EINVAL;
      return MAP_FAILED;
    }
    pthread_mutex_lock(&mu);
    if (state == kReady) {
      char req[100], reply[64];
      snprintf(req, sizeof req, "discard %zu %zu\n", (uintptr_t)addr - lo, (len + PAGE - 1) & ~(PAGE - 1));
      if (ask(req, reply, sizeof reply) != 0) monitor_lost();
    }
    pthread_mutex_unlock(&mu);
    syscall(SYS_mprotect, addr, (len + PAGE - 1) & ~(PAGE - 1), prot);
    return addr;
  }
  return sys_result(raw_mmap(addr, len, prot, flags, fd, off));
}
EXPORT void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off64_t off) {
  return mmap(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void* addr, size_t len) {
  if (!in_arena(addr)) return syscall(SYS_munmap, addr, len) == 0 ? 0 : -1;
  if ((uintptr_t)addr % PAGE || (uintptr_t)addr + len > hi) {
    errno = EINVAL;
    return -1;
  }
  pthread_mutex_lock(&mu);
  give((uintptr_t)addr, len);
  pthread_mutex_unlock(&mu);
  return 0;
}

EXPORT void* mremap(void* old, size_t oldLen, size_t newLen, int flags, ...) {
  void* want = NULL;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    want = va_arg(ap, void*);
    va_end(ap);
  }
  if (!in_arena(old)) return sys_result(syscall(SYS_mremap, old, oldLen, newLen, flags, want));
  if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) {  // not for arena pages
    errno = EINVAL;
    return MAP_FAILED;
  }
  size_t oldPages = (oldLen + PAGE - 1) / PAGE, newPages = (newLen + PAGE - 1) / PAGE;
  uintptr_t a = (uintptr_t)old;
  pthread_mutex_lock(&mu);
  size_t first = (a - lo) / PAGE;
  if (newPages <= oldPages) {
    if (newPages < oldPages) give(a + newPages * PAGE, (oldPages - newPages) * PAGE);
    pthread_mutex_unlock(&mu);
    return old;
  }
  size_t k = first + oldPages;
  while (k < first + newPages && k < npages && !bit(k)) k++;
  if (k == first + newPages) {
    set_bits(first + oldPages, newPages - oldPages, 1);
    pthread_mutex_unlock(&mu);
    return old;
  }
  if (!(flags & MREMAP_MAYMOVE)) {
    pthread_mutex_unlock(&mu);
    errno = ENOMEM;
    return MAP_FAILED;
  }
  void* q = take(newLen, 0);
  pthread_mutex_unlock(&mu);
  if (q == MAP_FAILED || !q) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  memcpy(q, old, oldPages * PAGE);  // the pages come through the pager: no PTEs to move between mm-less owners
  pthread_mutex_lock(&mu);
  give(a, oldPages * PAGE);
  pthread_mutex_unlock(&mu);
  return q;
}

EXPORT int madvise(void* addr, size_t len, int advice) {
  if (!in_arena(addr)) return (int)syscall(SYS_madvise, addr, len, advice);
  if (advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_REMOVE) {
    // Private anonymous semantics: the pages read as zeros afterwards.
    uintptr_t a = (uintptr_t)addr & ~(PAGE - 1);
    size_t l = ((uintptr_t)addr + len - a + PAGE - 1) & ~(PAGE - 1);
    if (a + l > hi) l = hi - a;
    pthread_mutex_lock(&mu);
    if (state == kReady) {
      char req[100], reply[64];
      snprintf(req, sizeof req, "discard %zu %zu\n", a - lo, l);
      if (ask(req, reply, sizeof reply) != 0) monitor_lost();
    }
    pthread_mutex_unlock(&mu);
  }
  return 0;  // other advice has nothing to do on pages the monitor places
}
