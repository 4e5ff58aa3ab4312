#include "rdma/ah.h"

#include "rdma/pd.h"

namespace sos {

const napi_type_tag RdmaAh::kTag = {0x7d1a2b3c4d5e6f77ULL, 0x0a1b2c3d4e5f6078ULL};

Napi::Function RdmaAh::Init(Napi::Env env) { return Define(env, "RdmaAh", {}); }

RdmaAh::RdmaAh(const Napi::CallbackInfo& info) : VerbsWrap(info, 3) {
  Napi::Env env = info.Env();
  RdmaPd* pd = LiveNode<RdmaPd>(env, info[0], "pd");
  if (!pd) {
    Dead();
    return;
  }
  Napi::Object o = info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  struct ibv_ah_attr a = {};
  bool ok = true;
  if (!ParseGid(env, o.Get("dgid"), &a.grh.dgid)) {
    Dead();
    return;
  }
  a.is_global = 1;
  a.grh.sgid_index = static_cast<uint8_t>(U32(env, o, "sgidIndex", 0, &ok));
  a.grh.hop_limit = static_cast<uint8_t>(U32(env, o, "hopLimit", 64, &ok));
  a.port_num = static_cast<uint8_t>(U32(env, o, "port", 1, &ok));
  if (!ok) {
    Dead();
    return;
  }
  v_ = pd->verbs();
  ah_ = v_->create_ah(pd->pd(), &a);
  if (!ah_) {
    ThrowSys(env, "ibv_create_ah", errno ? errno : EINVAL);
    Dead();
    return;
  }
  Hold(info[0], pd);
  Track(env, this);
}

int RdmaAh::Destroy() { return Release(ah_, v_->destroy_ah); }

}  // namespace sos
