// Address handles: the destinations of UD datagrams.
#pragma once
#include <napi.h>

#include "rdma/verbs.h"

namespace sos {

// ---------------- address handle (UD destinations) ----------------
// new RdmaAh(pd, { dgid, sgidIndex, hopLimit, port })
class RdmaAh : public VerbsWrap<RdmaAh> {
 public:
  static constexpr const char* kName = "AddressHandle";
  static constexpr const char* kWhat = "address handle";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env);
  explicit RdmaAh(const Napi::CallbackInfo& info);
  ~RdmaAh() override { CloseTree(); }
  struct ibv_ah* ah() const {
    return ah_;
  }

 private:
  int Destroy() override;
  const Verbs* v_ = nullptr;
  struct ibv_ah* ah_ = nullptr;
};

}  // namespace sos
