// Shared receive queues.
#pragma once
#include <napi.h>

#include "rdma/verbs.h"

namespace sos {

// ---------------- shared receive queue ----------------
class RdmaSrq : public VerbsWrap<RdmaSrq> {
 public:
  static constexpr const char* kName = "SharedReceiveQueue";
  static constexpr const char* kWhat = "shared receive queue";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env);
  // new RdmaSrq(pd, { maxWr, maxSge })
  explicit RdmaSrq(const Napi::CallbackInfo& info);
  ~RdmaSrq() override { CloseTree(); }
  struct ibv_srq* srq() const {
    return srq_;
  }

 private:
  int Destroy() override;
  Napi::Value PostRecv(const Napi::CallbackInfo& info);
  const Verbs* v_ = nullptr;
  struct ibv_srq* srq_ = nullptr;
};

}  // namespace sos
