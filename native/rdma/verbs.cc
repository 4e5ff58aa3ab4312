#include "rdma/verbs.h"

#include <arpa/inet.h>

#include <algorithm>
#include <string>

#include "rdma/ah.h"
#include "rdma/cm.h"
#include "rdma/context.h"
#include "rdma/cq.h"
#include "rdma/pd.h"
#include "rdma/prepared.h"
#include "rdma/qp.h"
#include "rdma/srq.h"

namespace sos {

void VerbsNode::CloseTree() {
  if (closed_) return;
  closed_ = true;
  // Children first, newest first; each removes itself from our list.
  while (!children_.empty()) {
    VerbsNode* c = children_.back();
    c->CloseTree();
    if (!children_.empty() && children_.back() == c) children_.pop_back();
  }
  destroyErr_ = Destroy();
  parents_.clear();  // after the handle is gone: the parents may be collected now
  for (VerbsNode* o : owners_) {
    auto& v = o->children_;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
  }
  owners_.clear();
  Untrack(Napi::Env(env_), this);
}

const Verbs* RequireVerbs(Napi::Env env) {
  std::string why;
  const Verbs* v = LoadVerbs(&why);
  if (!v) ThrowState(env, "ERR_NO_RDMA", why);
  return v;
}

std::string GidString(const union ibv_gid& g) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, g.raw, buf, sizeof(buf));
  return buf;
}

bool ParseGid(Napi::Env env, const Napi::Value& v, union ibv_gid* g) {
  if (!v.IsString() || inet_pton(AF_INET6, v.As<Napi::String>().Utf8Value().c_str(), g->raw) != 1) {
    ThrowType(env, "gid must be an IPv6-form string like ::ffff:10.0.2.15");
    return false;
  }
  return true;
}

uint32_t U32(Napi::Env env, Napi::Object o, const char* k, uint32_t dflt, bool* ok) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) return dflt;
  uint64_t x;
  if (!ToU64(env, v, k, &x) || x > UINT32_MAX) {
    if (!env.IsExceptionPending()) ThrowRange(env, std::string(k) + " must fit in 32 bits");
    *ok = false;
    return 0;
  }
  return static_cast<uint32_t>(x);
}

Napi::Object InitRdma(Napi::Env env, Napi::Object exports) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("devices", Napi::Function::New(env, Devices));
  r.Set("status", Napi::Function::New(env, Status));
  r.Set("RdmaContext", RdmaContext::Init(env));
  r.Set("RdmaPd", RdmaPd::Init(env));
  r.Set("RdmaMr", RdmaMr::Init(env));
  r.Set("RdmaCq", RdmaCq::Init(env));
  r.Set("RdmaChannel", RdmaChannel::Init(env));
  r.Set("RdmaAh", RdmaAh::Init(env));
  r.Set("RdmaSrq", RdmaSrq::Init(env));
  r.Set("RdmaQp", RdmaQp::Init(env));
  r.Set("RdmaPrepared", RdmaPrepared::Init(env));
  r.Set("wcStatusStr", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
          const Verbs* v = LoadVerbs(nullptr);
          uint64_t st = 0;
          if (!ToU64(info.Env(), info[0], "status", &st)) return info.Env().Undefined();
          return Napi::String::New(
              info.Env(), v && st <= 0xffff ? v->wc_status_str(static_cast<enum ibv_wc_status>(st)) : "unknown");
        }));
  r.Set("WC_SLOTS", static_cast<int>(kWcSlots));
  r.Set("WC_WITH_IMM", static_cast<int>(IBV_WC_WITH_IMM));
  r.Set("ACCESS_LOCAL_WRITE", static_cast<int>(IBV_ACCESS_LOCAL_WRITE));
  r.Set("ACCESS_REMOTE_WRITE", static_cast<int>(IBV_ACCESS_REMOTE_WRITE));
  r.Set("ACCESS_REMOTE_READ", static_cast<int>(IBV_ACCESS_REMOTE_READ));
  r.Set("ACCESS_REMOTE_ATOMIC", static_cast<int>(IBV_ACCESS_REMOTE_ATOMIC));
  InitRdmaCm(env, r);  // rdma_cm: native/rdma/cm.cc
  exports.Set("rdma", r);
  return exports;
}

}  // namespace sos
