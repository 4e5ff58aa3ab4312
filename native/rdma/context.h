// A device context (ibv_context): opened by name, queried, and the source of
// the device's async events; the root of the verbs tree. Also the device list.
#pragma once
#include <napi.h>

#include "core/fd_events.h"
#include "rdma/verbs.h"

namespace sos {

// devices() -> [{ name, guid, transport }]; status() -> { library, reason? }
Napi::Value Devices(const Napi::CallbackInfo& info);
Napi::Value Status(const Napi::CallbackInfo& info);

// ---------------- context ----------------
class RdmaContext : public VerbsWrap<RdmaContext> {
 public:
  static constexpr const char* kName = "Context";
  static constexpr const char* kWhat = "RDMA context";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env);
  explicit RdmaContext(const Napi::CallbackInfo& info);
  ~RdmaContext() override { CloseTree(); }
  struct ibv_context* ctx() const {
    return ctx_;
  }
  const Verbs* verbs() const { return v_; }

 private:
  int Destroy() override;
  // startEvents(cb({ type, port?, qpNum? })): async events (port up/down, QP
  // and CQ errors) read from the context's async fd on the libuv loop.
  Napi::Value StartEvents(const Napi::CallbackInfo& info);
  void OnAsyncEvents();
  FdEvents events_;
  Napi::Value Query(const Napi::CallbackInfo& info);
  Napi::Value QueryPort(const Napi::CallbackInfo& info);
  Napi::Value QueryGid(const Napi::CallbackInfo& info);

  const Verbs* v_ = nullptr;
  struct ibv_context* ctx_ = nullptr;
};

}  // namespace sos
