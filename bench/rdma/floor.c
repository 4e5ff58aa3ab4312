/*
 * bench/rdma/floor.c: the C floor of bench/rdma's latency loop, and a probe
 * of what the VM's emulated CPU (qemu TCG) does to a bigger process.
 *
 * One process, two RC QPs connected to each other through DEVICE (as in
 * bench/rdma/vm.ts): one signaled READ or WRITE of SIZE bytes at a time,
 * ibv_poll_cq in a tight loop, ITERS times after a warm-up. Between two ops,
 * untimed, it can stand in for the work a bigger runtime does per op (a JS
 * engine's builtins, runtime, N-API glue):
 *   PAGES   read one byte from each of PAGES distinct pages (data footprint)
 *   BLOCKS  call BLOCKS distinct tiny functions generated at run time, 256 B
 *           apart (instruction footprint; x86-64 only)
 * Times come from rdtsc (as perftest's), converted with the TSC rate measured
 * against CLOCK_MONOTONIC over the run.
 *
 *   floor DEVICE GID_INDEX read|write SIZE ITERS PAGES BLOCKS
 * prints one JSON line: { op, size, iters, pages, blocks, p50_us, p99_us, avg_us, post_p50_us }
 * (post_p50_us: time inside ibv_post_send, whose write(2) on rxe runs the
 * whole loopback exchange in the kernel).
 */
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t ticks(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

static double mono_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

static void die(const char* what) {
  fprintf(stderr, "floor: %s failed\n", what);
  exit(1);
}

static void connect_qp(struct ibv_qp* q, uint32_t peer, const union ibv_gid* gid, int gid_index) {
  struct ibv_qp_attr a;
  memset(&a, 0, sizeof a);
  a.qp_state = IBV_QPS_INIT;
  a.port_num = 1;
  a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  if (ibv_modify_qp(q, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) die("INIT");
  memset(&a, 0, sizeof a);
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = IBV_MTU_1024;
  a.dest_qp_num = peer;
  a.max_dest_rd_atomic = 16;
  a.min_rnr_timer = 12;
  a.ah_attr.is_global = 1;
  a.ah_attr.grh.dgid = *gid;
  a.ah_attr.grh.sgid_index = (uint8_t)gid_index;
  a.ah_attr.grh.hop_limit = 64;
  a.ah_attr.port_num = 1;
  if (ibv_modify_qp(q, &a,
                    IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                        IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
    die("RTR");
  memset(&a, 0, sizeof a);
  a.qp_state = IBV_QPS_RTS;
  a.timeout = 14;
  a.retry_cnt = 7;
  a.rnr_retry = 7;
  a.max_rd_atomic = 16;
  if (ibv_modify_qp(q, &a,
                    IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                        IBV_QP_MAX_QP_RD_ATOMIC))
    die("RTS");
}

int main(int argc, char** argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: floor DEVICE GID_INDEX read|write SIZE ITERS PAGES BLOCKS\n");
    return 2;
  }
  const char* dev = argv[1];
  int gid_index = atoi(argv[2]);
  int is_read = strcmp(argv[3], "read") == 0;
  size_t size = strtoul(argv[4], NULL, 10);
  int iters = atoi(argv[5]);
  int pages = atoi(argv[6]);
  int blocks = atoi(argv[7]);
  if (size < 1 || size > (1 << 20) || iters < 10 || pages < 0 || blocks < 0 || blocks > (1 << 20)) return 2;

  int n = 0;
  struct ibv_device** list = ibv_get_device_list(&n);
  struct ibv_context* ctx = NULL;
  for (int i = 0; list && i < n && !ctx; i++)
    if (strcmp(ibv_get_device_name(list[i]), dev) == 0) ctx = ibv_open_device(list[i]);
  if (!ctx) die("opening the device");
  struct ibv_pd* pd = ibv_alloc_pd(ctx);
  struct ibv_cq* cqa = ibv_create_cq(ctx, 64, NULL, NULL, 0);
  struct ibv_cq* cqb = ibv_create_cq(ctx, 64, NULL, NULL, 0);
  if (!pd || !cqa || !cqb) die("PD/CQ");
  struct ibv_qp_init_attr init;
  memset(&init, 0, sizeof init);
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = 16;
  init.cap.max_recv_wr = 16;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  init.send_cq = init.recv_cq = cqa;
  struct ibv_qp* a = ibv_create_qp(pd, &init);
  init.send_cq = init.recv_cq = cqb;
  struct ibv_qp* b = ibv_create_qp(pd, &init);
  union ibv_gid gid;
  if (!a || !b || ibv_query_gid(ctx, 1, gid_index, &gid)) die("QP/GID");
  connect_qp(a, b->qp_num, &gid, gid_index);
  connect_qp(b, a->qp_num, &gid, gid_index);

  size_t len = 1 << 20;
  char* mem_a = aligned_alloc(4096, len);
  char* mem_b = aligned_alloc(4096, len);
  if (!mem_a || !mem_b) die("allocation");
  memset(mem_a, 1, len);
  memset(mem_b, 2, len);
  int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  struct ibv_mr* mr_a = ibv_reg_mr(pd, mem_a, len, access);
  struct ibv_mr* mr_b = ibv_reg_mr(pd, mem_b, len, access);
  if (!mr_a || !mr_b) die("ibv_reg_mr");
  size_t ws_len = (size_t)(pages ? pages : 1) * 4096;
  volatile char* ws = malloc(ws_len);
  if (!ws) die("allocation");
  memset((void*)ws, 3, ws_len);
  // BLOCKS functions "mov eax, k; ret", 256 bytes apart.
  unsigned char* code = NULL;
  if (blocks) {
#if defined(__x86_64__)
    code = mmap(NULL, (size_t)blocks * 256, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED) die("mmap of the code blocks");
    for (int k = 0; k < blocks; k++) {
      unsigned char* c = code + (size_t)k * 256;
      c[0] = 0xb8;
      memcpy(c + 1, &k, 4);
      c[5] = 0xc3;
    }
#else
    die("BLOCKS on this architecture");
#endif
  }

  struct ibv_sge sge = {.addr = (uintptr_t)mem_a, .length = (uint32_t)size, .lkey = mr_a->lkey};
  struct ibv_send_wr wr, *bad;
  memset(&wr, 0, sizeof wr);
  wr.wr_id = 1;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = is_read ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = (uintptr_t)mem_b;
  wr.wr.rdma.rkey = mr_b->rkey;

  uint64_t* op = calloc((size_t)iters, sizeof *op);
  uint64_t* post = calloc((size_t)iters, sizeof *post);
  if (!op || !post) die("allocation");
  unsigned sink = 0;
  double us0 = 0;
  uint64_t t0 = 0;
  for (int i = -200; i < iters; i++) {
    if (i == 0) {
      us0 = mono_us();
      t0 = ticks();
    }
    for (int p = 0; p < pages; p++) sink += (unsigned char)ws[(size_t)p * 4096];
    for (int k = 0; k < blocks; k++) {
      int (*f)(void);
      void* at = code + (size_t)k * 256;
      memcpy(&f, &at, sizeof f);
      sink += (unsigned)f();
    }
    uint64_t s = ticks();
    if (ibv_post_send(a, &wr, &bad)) die("ibv_post_send");
    uint64_t m = ticks();
    struct ibv_wc wc;
    int got;
    while ((got = ibv_poll_cq(cqa, 1, &wc)) == 0) {}
    uint64_t e = ticks();
    if (got < 0 || wc.status != IBV_WC_SUCCESS) die("completion");
    if (i >= 0) {
      op[i] = e - s;
      post[i] = m - s;
    }
  }
  double per_us = (double)(ticks() - t0) / (mono_us() - us0);  // TSC ticks per microsecond
  double sum = 0;
  for (int i = 0; i < iters; i++) sum += (double)op[i];
  qsort(op, (size_t)iters, sizeof *op, cmp_u64);
  qsort(post, (size_t)iters, sizeof *post, cmp_u64);
  printf(
      "{\"op\":\"%s\",\"size\":%zu,\"iters\":%d,\"pages\":%d,\"blocks\":%d,\"p50_us\":%.3f,\"p99_us\":%.3f,\"avg_us\":%"
      ".3f,\"post_p50_us\":%.3f,\"sink\":%u}\n",
      is_read ? "read" : "write", size, iters, pages, blocks, (double)op[iters / 2] / per_us,
      (double)op[iters * 99 / 100] / per_us, sum / iters / per_us, (double)post[iters / 2] / per_us, sink & 1);
  ibv_destroy_qp(a);
  ibv_destroy_qp(b);
  ibv_dereg_mr(mr_a);
  ibv_dereg_mr(mr_b);
  ibv_destroy_cq(cqa);
  ibv_destroy_cq(cqb);
  ibv_dealloc_pd(pd);
  ibv_close_device(ctx);
  ibv_free_device_list(list);
  return 0;
}
