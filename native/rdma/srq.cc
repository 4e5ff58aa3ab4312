#include "rdma/srq.h"

#include "rdma/pd.h"
#include "rdma/work_request.h"

namespace sos {

const napi_type_tag RdmaSrq::kTag = {0x7d1a2b3c4d5e6f78ULL, 0x0a1b2c3d4e5f6079ULL};

Napi::Function RdmaSrq::Init(Napi::Env env) {
  return Define(env, "RdmaSrq", {InstanceMethod("postRecv", &RdmaSrq::PostRecv)});
}

RdmaSrq::RdmaSrq(const Napi::CallbackInfo& info) : VerbsWrap(info, 4) {
  Napi::Env env = info.Env();
  RdmaPd* pd = LiveNode<RdmaPd>(env, info[0], "pd");
  if (!pd) {
    Dead();
    return;
  }
  Napi::Object o = info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  bool ok = true;
  struct ibv_srq_init_attr a = {};
  a.attr.max_wr = U32(env, o, "maxWr", 64, &ok);
  a.attr.max_sge = U32(env, o, "maxSge", 1, &ok);
  if (!ok) {
    Dead();
    return;
  }
  v_ = pd->verbs();
  srq_ = v_->create_srq(pd->pd(), &a);
  if (!srq_) {
    ThrowSys(env, "ibv_create_srq", errno ? errno : EINVAL);
    Dead();
    return;
  }
  Hold(info[0], pd);
  Track(env, this);
}

int RdmaSrq::Destroy() { return Release(srq_, v_->destroy_srq); }

Napi::Value RdmaSrq::PostRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  RecvBatch b;
  if (!ReadRecvWrs(env, info[0], &b) || b.wrs.empty() || !Live(env)) return env.Undefined();
  struct ibv_recv_wr* bad = nullptr;
  int r = ibv_post_srq_recv(srq_, b.wrs.data(), &bad);
  if (r) ThrowSys(env, "ibv_post_srq_recv", r);
  return env.Undefined();
}

}  // namespace sos
