// The network floor for remote memory: plain TCP between the same two
// namespaces the memory node and its client use, with no framing, no crypto
// and no userfaultfd.
//
//   tcp_floor serve PORT               echo server (one thread per connection)
//   tcp_floor rtt HOST PORT COUNT SIZE  COUNT round trips: a 16-byte request,
//                                       a SIZE-byte reply; JSON p50/p99 (ns)
//   tcp_floor stream HOST PORT BYTES    the server sends BYTES in 1 MiB writes;
//                                       JSON bytes_per_s
//
// Both ends set TCP_NODELAY (as the memory node does).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct req {
  uint32_t op;  // 0: reply `size` bytes; 1: stream `size` bytes
  uint32_t pad;
  uint64_t size;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int full(int fd, void *buf, size_t len, int writing) {
  uint8_t *p = buf;
  while (len) {
    ssize_t r = writing ? write(fd, p, len) : read(fd, p, len);
    if (r <= 0) return -1;
    p += r;
    len -= (size_t)r;
  }
  return 0;
}

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void *serve_one(void *arg) {
  int fd = (int)(intptr_t)arg;
  static uint8_t zeros[1 << 20];
  struct req q;
  nodelay(fd);
  while (full(fd, &q, sizeof(q), 0) == 0) {
    uint64_t left = q.size;
    while (left) {
      size_t n = left < sizeof(zeros) ? left : sizeof(zeros);
      if (full(fd, zeros, n, 1)) goto out;
      left -= n;
    }
  }
out:
  close(fd);
  return NULL;
}

static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int dial(const char *host, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) return -1;
  nodelay(fd);
  return fd;
}

int main(int argc, char **argv) {
  if (argc >= 3 && !strcmp(argv[1], "serve")) {
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 16)) {
      perror("bind/listen");
      return 1;
    }
    printf("{\"listening\":%d}\n", atoi(argv[2]));
    fflush(stdout);
    for (;;) {
      int fd = accept(ls, NULL, NULL);
      if (fd < 0) continue;
      pthread_t t;
      pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd);
      pthread_detach(t);
    }
  }
  if (argc >= 6 && !strcmp(argv[1], "rtt")) {
    int fd = dial(argv[2], atoi(argv[3]));
    uint64_t count = strtoull(argv[4], NULL, 10), size = strtoull(argv[5], NULL, 10);
    if (fd < 0 || !count || !size) {
      perror("rtt");
      return 1;
    }
    uint8_t *buf = malloc(size);
    uint64_t *t = malloc(count * sizeof(*t));
    struct req q = {0, 0, size};
    for (uint64_t i = 0; i < count; i++) {
      uint64_t t0 = now_ns();
      if (full(fd, &q, sizeof(q), 1) || full(fd, buf, size, 0)) {
        perror("rtt io");
        return 1;
      }
      t[i] = now_ns() - t0;
    }
    qsort(t, count, sizeof(*t), cmp);
    printf("{\"count\":%llu,\"size\":%llu,\"p50_ns\":%llu,\"p99_ns\":%llu}\n", (unsigned long long)count,
           (unsigned long long)size, (unsigned long long)t[count / 2], (unsigned long long)t[count * 99 / 100]);
    return 0;
  }
  if (argc >= 5 && !strcmp(argv[1], "stream")) {
    int fd = dial(argv[2], atoi(argv[3]));
    uint64_t bytes = strtoull(argv[4], NULL, 10), got = 0;
    static uint8_t buf[1 << 20];
    if (fd < 0) {
      perror("stream");
      return 1;
    }
    struct req q = {1, 0, bytes};
    uint64_t t0 = now_ns();
    if (full(fd, &q, sizeof(q), 1)) return 1;
    while (got < bytes) {
      ssize_t r = read(fd, buf, sizeof(buf));
      if (r <= 0) {
        perror("stream read");
        return 1;
      }
      got += (uint64_t)r;
    }
    uint64_t el = now_ns() - t0;
    printf("{\"bytes\":%llu,\"elapsed_ns\":%llu,\"bytes_per_s\":%.0f}\n", (unsigned long long)bytes,
           (unsigned long long)el, (double)bytes * 1e9 / (double)el);
    return 0;
  }
  fprintf(stderr, "usage: tcp_floor serve PORT | rtt HOST PORT COUNT SIZE | stream HOST PORT BYTES\n");
  return 2;
}
