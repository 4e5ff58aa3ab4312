#include "memory/rdma_link.h"

#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

namespace sos {

namespace {
uint64_t NowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}
// A lost peer should show as a retry-exceeded completion after the QP's own
// retries (timeout 14: ~67 ms, 7 tries), but soft-RoCE on one device never
// reported one (measured: nothing in 30 s): this bounds every wait.
constexpr uint64_t kWaitMs = 5000;
constexpr int kPending = 1;  // an op's result before its completion arrives
}  // namespace

std::unique_ptr<RdmaLink> RdmaLink::Open(const std::string& device, int gidIndex, uint32_t depth, std::string* err) {
  std::unique_ptr<RdmaLink> l(new RdmaLink());
  l->v_ = LoadVerbs(err);
  if (!l->v_) return nullptr;
  const Verbs* v = l->v_;
  int n = 0;
  struct ibv_device** list = v->get_device_list(&n);
  if (!list) {
    *err = std::string("ibv_get_device_list: ") + strerror(errno);
    return nullptr;
  }
  for (int i = 0; i < n && !l->ctx_; i++)
    if (device.empty() || device == v->get_device_name(list[i])) l->ctx_ = v->open_device(list[i]);
  v->free_device_list(list);
  if (!l->ctx_) {
    *err = device.empty() ? "no RDMA device" : "no RDMA device named " + device;
    return nullptr;
  }
  struct ibv_device_attr da;
  struct ibv_port_attr pa;
  if (v->query_device(l->ctx_, &da) || v->query_port(l->ctx_, 1, &pa)) {
    *err = "ibv_query_device/ibv_query_port failed";
    return nullptr;
  }
  l->mtu_ = pa.active_mtu;
  l->maxRd_ = static_cast<uint32_t>(std::max(1, std::min(16, da.max_qp_rd_atom)));
  l->depth_ = std::max<uint32_t>(1, std::min<uint32_t>(depth, static_cast<uint32_t>(da.max_qp_wr)));
  l->gidIndex_ = gidIndex;
  union ibv_gid gid;
  if (v->query_gid(l->ctx_, 1, gidIndex, &gid)) {
    *err = "ibv_query_gid failed for GID index " + std::to_string(gidIndex);
    return nullptr;
  }
  memcpy(l->local_.gid, gid.raw, 16);
  l->pd_ = v->alloc_pd(l->ctx_);
  if (!l->pd_) {
    *err = std::string("ibv_alloc_pd: ") + strerror(errno);
    return nullptr;
  }
  l->cq_ = v->create_cq(l->ctx_, static_cast<int>(l->depth_), nullptr, nullptr, 0);
  if (!l->cq_) {
    *err = std::string("ibv_create_cq: ") + strerror(errno);
    return nullptr;
  }
  struct ibv_qp_init_attr ia = {};
  ia.send_cq = l->cq_;
  ia.recv_cq = l->cq_;
  ia.qp_type = IBV_QPT_RC;
  ia.sq_sig_all = 1;
  ia.cap.max_send_wr = l->depth_;
  ia.cap.max_recv_wr = 1;
  ia.cap.max_send_sge = 1;
  ia.cap.max_recv_sge = 1;
  l->qp_ = v->create_qp(l->pd_, &ia);
  if (!l->qp_) {
    *err = std::string("ibv_create_qp: ") + strerror(errno);
    return nullptr;
  }
  l->local_.qpn = l->qp_->qp_num;
  l->local_.psn = std::random_device()() & 0xffffff;
  return l;
}

RdmaLink::~RdmaLink() {
  if (!v_) return;
  if (qp_) v_->destroy_qp(qp_);
  if (cq_) v_->destroy_cq(cq_);
  if (pd_) v_->dealloc_pd(pd_);
  if (ctx_) v_->close_device(ctx_);
}

int RdmaLink::Connect(const RdmaEndpoint& remote, const char** call) {
  struct ibv_qp_attr a = {};
  a.qp_state = IBV_QPS_INIT;
  a.port_num = 1;
  a.pkey_index = 0;
  a.qp_access_flags = IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
  *call = "ibv_modify_qp(INIT)";
  if (int r = v_->modify_qp(qp_, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) return r;
  a = {};
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = mtu_;
  a.dest_qp_num = remote.qpn;
  a.rq_psn = remote.psn;
  a.max_dest_rd_atomic = static_cast<uint8_t>(maxRd_);
  a.min_rnr_timer = 12;
  a.ah_attr.is_global = 1;
  memcpy(a.ah_attr.grh.dgid.raw, remote.gid, 16);
  a.ah_attr.grh.sgid_index = static_cast<uint8_t>(gidIndex_);
  a.ah_attr.grh.hop_limit = 64;
  a.ah_attr.port_num = 1;
  *call = "ibv_modify_qp(RTR)";
  if (int r = v_->modify_qp(qp_, &a,
                            IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
    return r;
  a = {};
  a.qp_state = IBV_QPS_RTS;
  a.timeout = 14;
  a.retry_cnt = 7;
  a.rnr_retry = 7;
  a.sq_psn = local_.psn;
  a.max_rd_atomic = static_cast<uint8_t>(maxRd_);
  *call = "ibv_modify_qp(RTS)";
  return v_->modify_qp(
      qp_, &a,
      IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

struct ibv_mr* RdmaLink::Register(void* addr, size_t len, int access, int* err) {
  struct ibv_mr* mr = v_->reg_mr(pd_, addr, len, access);
  *err = mr ? 0 : errno;
  return mr;
}

void RdmaLink::Deregister(struct ibv_mr* mr) {
  if (mr) v_->dereg_mr(mr);
}

// Completions for `want` signalled ops (wr_id = index into ops).
int RdmaLink::Wait(size_t want, Op* ops, size_t n) {
  struct ibv_wc wc[16];
  uint64_t until = NowMs() + kWaitMs;
  int first = 0;
  auto fail = [&](int err) {
    broken_ = true;
    for (size_t i = 0; i < n; i++)
      if (ops[i].result == kPending) ops[i].result = err;
    return err;
  };
  while (want) {
    int got = ibv_poll_cq(cq_, 16, wc);
    if (got < 0) return fail(-EIO);
    if (got == 0) {
      if (NowMs() > until) return fail(-ETIMEDOUT);
      sched_yield();
      continue;
    }
    for (int i = 0; i < got; i++) {
      Op& op = ops[wc[i].wr_id];
      if (wc[i].status == IBV_WC_SUCCESS) {
        op.result = 0;
      } else {
        // The QP is in the error state now: every later op fails too.
        op.result = wc[i].status == IBV_WC_RETRY_EXC_ERR ? -EHOSTUNREACH : -EIO;
        broken_ = true;
        if (!first) first = op.result;
      }
    }
    want -= static_cast<size_t>(got);
  }
  return first;
}

// At most min(depth, max_rd_atomic for READs) in flight; completions are
// reaped before the next window goes out.
int RdmaLink::Run(bool write, struct ibv_mr* mr, uint32_t rkey, Op* ops, size_t n) {
  if (broken_) {
    for (size_t i = 0; i < n; i++) ops[i].result = -ENOTCONN;
    return -ENOTCONN;
  }
  size_t window = write ? depth_ : std::min(depth_, maxRd_);
  int first = 0;
  for (size_t done = 0; done < n;) {
    size_t k = std::min(window, n - done);
    size_t posted = 0;
    for (; posted < k; posted++) {
      Op& op = ops[done + posted];
      op.result = kPending;
      struct ibv_sge sge = {op.local, op.len, mr->lkey};
      struct ibv_send_wr wr = {}, *bad = nullptr;
      wr.wr_id = done + posted;
      wr.sg_list = &sge;
      wr.num_sge = 1;
      wr.opcode = write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
      wr.send_flags = IBV_SEND_SIGNALED;
      wr.wr.rdma.remote_addr = op.remote;
      wr.wr.rdma.rkey = rkey;
      if (int r = ibv_post_send(qp_, &wr, &bad)) {
        op.result = -r;
        if (!first) first = -r;
        broken_ = true;
        break;
      }
    }
    int w = Wait(posted, ops, done + posted);
    if (w && !first) first = w;
    if (posted < k || broken_) {
      if (!first) first = -EIO;
      for (size_t i = done + posted; i < n; i++) ops[i].result = first;  // never posted
      return first;
    }
    done += k;
  }
  return first;
}

// ---- RdmaSource ----
RdmaSource::RdmaSource(std::unique_ptr<RdmaLink> link, uint64_t remoteAddr, uint32_t rkey, uint64_t size, int* err)
    : link_(std::move(link)), remote_(remoteAddr), size_(size), rkey_(rkey) {
  bounceLen_ = static_cast<size_t>(link_->depth()) * 64 * 1024;
  void* m = mmap(nullptr, bounceLen_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    *err = errno;
    return;
  }
  bounce_ = static_cast<uint8_t*>(m);
  mr_ = link_->Register(bounce_, bounceLen_, IBV_ACCESS_LOCAL_WRITE, err);
}

RdmaSource::~RdmaSource() {
  link_->Deregister(mr_);
  if (bounce_) munmap(bounce_, bounceLen_);
}

int RdmaSource::Fetch(uint64_t off, void* buf, uint64_t len) {
  Io io{off, buf, len, 0};
  return FetchV(&io, 1);
}

int RdmaSource::Store(uint64_t off, const void* buf, uint64_t len) {
  Io io{off, const_cast<void*>(buf), len, 0};
  return StoreV(&io, 1);
}

int RdmaSource::FetchV(Io* ios, size_t n) { return Transfer(false, ios, n); }
int RdmaSource::StoreV(Io* ios, size_t n) { return Transfer(true, ios, n); }

// Runs cut into 64 KiB ops that fill the bounce buffer, one buffer-full at a
// time: copy in (writes), post them all, wait, copy out (reads).
int RdmaSource::Transfer(bool write, Io* ios, size_t n) {
  constexpr uint64_t kOp = 64 * 1024;
  for (size_t i = 0; i < n; i++) {
    ios[i].result = 0;
    if (ios[i].off > size_ || ios[i].len > size_ - ios[i].off) ios[i].result = -ERANGE;
  }
  if (!mr_) {
    for (size_t i = 0; i < n; i++) ios[i].result = -ENOTCONN;
    return -ENOTCONN;
  }
  std::lock_guard<std::mutex> lock(mu_);
  struct Piece {
    size_t io;
    uint64_t at;
  };
  std::vector<RdmaLink::Op> ops;
  std::vector<Piece> pieces;
  auto flush = [&]() {
    if (ops.empty()) return;
    link_->Run(write, mr_, rkey_, ops.data(), ops.size());
    for (size_t k = 0; k < ops.size(); k++) {
      Io& io = ios[pieces[k].io];
      if (ops[k].result) {
        if (!io.result) io.result = ops[k].result;
      } else if (!write) {
        memcpy(static_cast<uint8_t*>(io.buf) + pieces[k].at, reinterpret_cast<void*>(ops[k].local), ops[k].len);
      }
    }
    ops.clear();
    pieces.clear();
  };
  uint64_t used = 0;
  for (size_t i = 0; i < n; i++) {
    if (ios[i].result) continue;
    for (uint64_t at = 0; at < ios[i].len; at += kOp) {
      uint32_t len = static_cast<uint32_t>(std::min(kOp, ios[i].len - at));
      if (used + len > bounceLen_) {
        flush();
        used = 0;
      }
      uint8_t* local = bounce_ + used;
      if (write) memcpy(local, static_cast<const uint8_t*>(ios[i].buf) + at, len);
      ops.push_back({reinterpret_cast<uint64_t>(local), len, remote_ + ios[i].off + at, 0});
      pieces.push_back({i, at});
      used += len;
    }
  }
  flush();
  int first = 0;
  for (size_t i = 0; i < n && !first; i++) first = ios[i].result;
  return first;
}

}  // namespace sos
