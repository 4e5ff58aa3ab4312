// One reliable-connected queue pair with its own protection domain and
// completion queue, owned entirely by C++ (no JavaScript verbs objects), for
// far memory's one-sided page traffic. Both ends use it: a memory node
// registers a region in the link's PD (so the rkey it hands out is valid on
// this link only), a client registers its bounce buffer and posts READs and
// WRITEs. Endpoints (QPN, PSN, GID) are exchanged over the authenticated
// control connection.
#pragma once
#include <infiniband/verbs.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "rdma/lib.h"
#include "uffd/page_source.h"

namespace sos {

struct RdmaEndpoint {
  uint32_t qpn = 0;
  uint32_t psn = 0;
  uint8_t gid[16] = {};
};

class RdmaLink {
 public:
  // Opens `device` (port 1) and makes the PD, CQ and QP; nullptr with *err.
  static std::unique_ptr<RdmaLink> Open(const std::string& device, int gidIndex, uint32_t depth, std::string* err);
  ~RdmaLink();
  RdmaLink(const RdmaLink&) = delete;
  RdmaLink& operator=(const RdmaLink&) = delete;

  const RdmaEndpoint& Local() const { return local_; }
  // INIT -> RTR -> RTS towards the peer. 0 or an errno (*call names the step).
  int Connect(const RdmaEndpoint& remote, const char** call);
  // Memory in this link's PD. access: IBV_ACCESS_* flags. nullptr + errno.
  struct ibv_mr* Register(void* addr, size_t len, int access, int* err);
  void Deregister(struct ibv_mr* mr);

  // Post one-sided READs or WRITEs (local buffers inside `mr`) and wait for
  // every completion. Each op's result: 0 or a negative errno. Not
  // thread-safe: callers serialise (RdmaSource holds a mutex).
  struct Op {
    uint64_t local;  // address inside mr
    uint32_t len;
    uint64_t remote;
    int result;
  };
  int Run(bool write, struct ibv_mr* mr, uint32_t rkey, Op* ops, size_t n);
  bool broken() const { return broken_; }
  uint32_t depth() const { return depth_; }

 private:
  RdmaLink() = default;
  // Reaps `want` completions; on a failure every op of ops[0, n) still
  // pending gets the error.
  int Wait(size_t want, Op* ops, size_t n);
  const Verbs* v_ = nullptr;
  struct ibv_context* ctx_ = nullptr;
  struct ibv_pd* pd_ = nullptr;
  struct ibv_cq* cq_ = nullptr;
  struct ibv_qp* qp_ = nullptr;
  int gidIndex_ = 1;
  uint32_t depth_ = 64, maxRd_ = 16;
  enum ibv_mtu mtu_ = IBV_MTU_1024;
  RdmaEndpoint local_;
  bool broken_ = false;
};

// A far-memory page source over RDMA: pages of one memory-node region read
// and written with one-sided verbs through a registered bounce buffer.
class RdmaSource : public PageSource {
 public:
  // Takes the link (already connected) and the region's address and rkey.
  RdmaSource(std::unique_ptr<RdmaLink> link, uint64_t remoteAddr, uint32_t rkey, uint64_t size, int* err);
  ~RdmaSource() override;
  const char* Kind() const override { return "rdma"; }
  uint64_t Size() const override { return size_; }
  int Fetch(uint64_t off, void* buf, uint64_t len) override;
  int Store(uint64_t off, const void* buf, uint64_t len) override;
  int FetchV(Io* ios, size_t n) override;
  int StoreV(Io* ios, size_t n) override;

 private:
  int Transfer(bool write, Io* ios, size_t n);
  std::mutex mu_;
  std::unique_ptr<RdmaLink> link_;
  uint64_t remote_, size_;
  uint32_t rkey_;
  uint8_t* bounce_ = nullptr;
  size_t bounceLen_ = 0;
  struct ibv_mr* mr_ = nullptr;
};

}  // namespace sos
