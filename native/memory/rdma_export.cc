#include "memory/rdma_export.h"

#include <cerrno>
#include <cstring>

namespace sos::mem {

RdmaExports::~RdmaExports() {
  while (!ex_.empty()) Erase(ex_.size() - 1);
}

// The MR goes before its link's PD, and both before the region is unmapped.
void RdmaExports::Erase(size_t i) {
  ex_[i].link->Deregister(ex_[i].mr);
  ex_[i] = std::move(ex_.back());
  ex_.pop_back();
}

Status RdmaExports::Attach(int conn, const Region& r, const uint8_t* peer, uint8_t* out, std::string* why) {
  if (!o_.enabled) {
    *why = "this memory node serves no RDMA";
    return S_UNSUPPORTED;
  }
  size_t mine = 0;
  for (const Export& e : ex_) mine += e.conn == conn;
  if (mine >= o_.perConnection || ex_.size() >= o_.total) {
    *why = "too many RDMA attachments (" + std::to_string(mine) + " on this connection, " + std::to_string(ex_.size()) +
           " in all)";
    return S_LIMIT;
  }
  std::string err;
  std::unique_ptr<RdmaLink> link = RdmaLink::Open(o_.device, o_.gidIndex, 16, &err);
  if (!link) {
    *why = err;
    return S_RDMA;
  }
  RdmaEndpoint remote;
  remote.qpn = Get32(peer);
  remote.psn = Get32(peer + 4) & 0xffffff;
  memcpy(remote.gid, peer + 8, 16);
  const char* call = "";
  int e = link->Connect(remote, &call);
  if (e) {
    *why = std::string(call) + ": " + strerror(e);
    return S_RDMA;
  }
  int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
  struct ibv_mr* mr = link->Register(r.base, r.pages * kPage, access, &e);
  if (!mr) {
    *why = std::string("ibv_reg_mr: ") + strerror(e);
    return S_RDMA;
  }
  const RdmaEndpoint& l = link->Local();
  Put32(out, l.qpn);
  Put32(out + 4, l.psn);
  memcpy(out + 8, l.gid, 16);
  Put64(out + 24, reinterpret_cast<uint64_t>(r.base));
  Put32(out + 32, mr->rkey);
  ex_.push_back({conn, r.id, std::move(link), mr});
  return S_OK;
}

void RdmaExports::DropConnection(int conn) {
  for (size_t i = ex_.size(); i-- > 0;)
    if (ex_[i].conn == conn) Erase(i);
}

void RdmaExports::DropRegion(uint64_t region) {
  for (size_t i = ex_.size(); i-- > 0;)
    if (ex_[i].region == region) Erase(i);
}

}  // namespace sos::mem
