// Prepared sends: work requests checked once, posted many times.
#pragma once
#include <napi.h>

#include <cmath>
#include <vector>

#include "rdma/verbs.h"
#include "rdma/work_request.h"

namespace sos {

class RdmaMr;

// ---------------- prepared send ----------------
// new RdmaPrepared(qp, wrs): work requests converted and checked once, then
// posted many times with post(ctl, count). ctl (a Float64Array, the layout
// from layout()) carries what may change between posts: per work request
// wrId, remoteAddr, rkey, imm, then offset and length of each SGE (offset
// within its MR). A post reads only those numbers, checks them in C++ (the
// SGEs against their MR, an MR over JS memory for a detached ArrayBuffer)
// and calls ibv_post_send: no property reads, no objects. The prepared send
// is a child of its QP and of every MR and AH it names: they stay referenced
// while it lives, and closing any of them closes it first.
enum PrepSlot { kPrepWrId, kPrepRemoteAddr, kPrepRkey, kPrepImm, kPrepWrSlots };
class RdmaPrepared : public VerbsWrap<RdmaPrepared> {
 public:
  static constexpr const char* kName = "PreparedSend";
  static constexpr const char* kWhat =
      "prepared send (closed itself, or with its queue pair, a memory region or an address handle)";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env);
  explicit RdmaPrepared(const Napi::CallbackInfo& info);
  ~RdmaPrepared() override { CloseTree(); }

 private:
  static constexpr uint64_t kMaxSafe = 9007199254740991ULL;
  int Destroy() override;
  // layout() -> [offset of WR 0, offset of WR 1, ..., total length of ctl]
  Napi::Value Layout(const Napi::CallbackInfo& info);
  double* Ctl(napi_env env, napi_value v, bool required);
  // read(ctl): the prepared values into ctl.
  Napi::Value Read(const Napi::CallbackInfo& info);
  bool type_ud() const { return qp_ && qp_->qp_type == IBV_QPT_UD; }
  static bool Whole(double d, double max) { return d >= 0 && d <= max && d == std::floor(d); }
  // post(ctl?, count?): the first count (default all) work requests, with
  // ctl's values when given; nothing is posted when a value is out of range.
  Napi::Value Post(const Napi::CallbackInfo& info);
  SendBatch b_;
  std::vector<uint32_t> base_;
  std::vector<uint64_t> mrLen_, mrAddr_;  // per SGE: its MR's length and start
  std::vector<RdmaMr*> mrs_;              // each MR once (parents: they outlive this), checked for a detach per post
  struct ibv_qp* qp_ = nullptr;
};

}  // namespace sos
