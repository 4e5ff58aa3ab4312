// A memory node's RDMA exports: for an authenticated connection, one
// RdmaLink per region it attaches, whose protection domain holds that
// region's pages and nothing else, so the rkey handed out over the sealed
// control connection opens this region to this link's peer only. Exports go
// when their connection closes or their region is freed (before its pages
// are unmapped). Not thread-safe: the server calls it under its lock.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memory/protocol.h"
#include "memory/rdma_link.h"
#include "memory/store.h"

namespace sos::mem {

struct RdmaExportOptions {
  std::string device;  // "" with enabled: the first device
  int gidIndex = 1;
  bool enabled = false;
  uint32_t perConnection = 4, total = 256;  // QPs, CQs and pinned regions a peer can make the node hold
};

class RdmaExports {
 public:
  explicit RdmaExports(const RdmaExportOptions& o) : o_(o) {}
  ~RdmaExports();
  RdmaExports(const RdmaExports&) = delete;
  RdmaExports& operator=(const RdmaExports&) = delete;

  // Connect a new link to `peer` and register r's pages on it. S_OK with
  // out[kAttachReply] = {u32 qpn, u32 psn, gid[16], u64 addr, u32 rkey};
  // else S_UNSUPPORTED, S_LIMIT or S_RDMA with *why.
  Status Attach(int conn, const Region& r, const uint8_t* peer, uint8_t* out, std::string* why);
  void DropConnection(int conn);
  void DropRegion(uint64_t region);
  size_t size() const { return ex_.size(); }

 private:
  struct Export {
    int conn;
    uint64_t region;
    std::unique_ptr<RdmaLink> link;
    struct ibv_mr* mr;
  };
  void Erase(size_t i);
  RdmaExportOptions o_;
  std::vector<Export> ex_;
};

}  // namespace sos::mem
