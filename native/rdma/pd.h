// Protection domains and the memory regions registered in them.
#pragma once
#include <napi.h>

#include <memory>

#include "rdma/verbs.h"
#include "uffd/mapping.h"

namespace sos {

// ---------------- protection domain ----------------
class RdmaPd : public VerbsWrap<RdmaPd> {
 public:
  static constexpr const char* kName = "ProtectionDomain";
  static constexpr const char* kWhat = "protection domain";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env);
  explicit RdmaPd(const Napi::CallbackInfo& info);
  ~RdmaPd() override { CloseTree(); }
  struct ibv_pd* pd() const {
    return pd_;
  }
  const Verbs* verbs() const { return v_; }

 private:
  int Destroy() override;
  const Verbs* v_ = nullptr;
  struct ibv_pd* pd_ = nullptr;
  struct ibv_context* ctx_ = nullptr;
};

// ---------------- memory region ----------------
// new RdmaMr(pd, target, offset, length, accessBits): target is a Region
// (pinned while registered), JS memory (its ArrayBuffer kept referenced, so
// GC cannot free it; local access only, since JavaScript can detach it and
// free the memory under the device), or a raw { address, length }.
class RdmaMr : public VerbsWrap<RdmaMr> {
 public:
  static constexpr const char* kName = "MemoryRegion";
  static constexpr const char* kWhat = "memory region";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env);
  explicit RdmaMr(const Napi::CallbackInfo& info);
  ~RdmaMr() override { CloseTree(); }
  const char* DestroyCall() const override { return "ibv_dereg_mr"; }
  struct ibv_mr* mr() const {
    return mr_;
  }
  // Over JS memory whose ArrayBuffer was detached (transferred): its memory
  // is no longer JavaScript's to hand to the device.
  bool Detached(napi_env env) const;

 private:
  int Destroy() override;
  Napi::Value Info(const Napi::CallbackInfo& info);
  const Verbs* v_ = nullptr;
  struct ibv_mr* mr_ = nullptr;
  std::unique_ptr<Pin> pin_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;  // JS memory: the ArrayBuffer under it
};

}  // namespace sos
