#include "rdma/qp.h"

#include <string>

#include "rdma/cq.h"
#include "rdma/pd.h"
#include "rdma/srq.h"
#include "rdma/work_request.h"

namespace sos {

const napi_type_tag RdmaQp::kTag = {0x7d1a2b3c4d5e6f74ULL, 0x0a1b2c3d4e5f6075ULL};

Napi::Function RdmaQp::Init(Napi::Env env) {
  return Define(env, "RdmaQp",
                {InstanceMethod("info", &RdmaQp::Info), InstanceMethod("modify", &RdmaQp::Modify),
                 InstanceMethod("postSend", &RdmaQp::PostSend), InstanceMethod("postRecv", &RdmaQp::PostRecv)});
}

RdmaQp::RdmaQp(const Napi::CallbackInfo& info) : VerbsWrap(info, 3) {
  Napi::Env env = info.Env();
  RdmaPd* pd = LiveNode<RdmaPd>(env, info[0], "pd");
  RdmaCq* scq = pd ? LiveNode<RdmaCq>(env, info[1], "sendCq") : nullptr;
  RdmaCq* rcq = scq ? LiveNode<RdmaCq>(env, info[2], "recvCq") : nullptr;
  if (!rcq) {
    Dead();
    return;
  }
  Napi::Object o = info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
  bool ok = true;
  struct ibv_qp_init_attr a = {};
  std::string type = o.Get("type").IsString() ? o.Get("type").As<Napi::String>().Utf8Value() : "RC";
  if (type != "RC" && type != "UD") {
    ThrowType(env, "type must be 'RC' or 'UD'");
    Dead();
    return;
  }
  a.qp_type = type == "RC" ? IBV_QPT_RC : IBV_QPT_UD;
  a.send_cq = scq->cq();
  a.recv_cq = rcq->cq();
  a.cap.max_send_wr = U32(env, o, "maxSendWr", 64, &ok);
  a.cap.max_recv_wr = U32(env, o, "maxRecvWr", 64, &ok);
  a.cap.max_send_sge = U32(env, o, "maxSendSge", 1, &ok);
  a.cap.max_recv_sge = U32(env, o, "maxRecvSge", 1, &ok);
  a.cap.max_inline_data = U32(env, o, "maxInlineData", 0, &ok);
  a.sq_sig_all = o.Get("sigAll").ToBoolean() ? 1 : 0;
  RdmaSrq* srq = nullptr;
  if (!o.Get("srq").IsUndefined()) {
    srq = LiveNode<RdmaSrq>(env, o.Get("srq"), "srq");
    if (!srq) {
      Dead();
      return;
    }
    a.srq = srq->srq();
  }
  if (!ok) {
    Dead();
    return;
  }
  v_ = pd->verbs();
  qp_ = v_->create_qp(pd->pd(), &a);
  if (!qp_) {
    ThrowSys(env, "ibv_create_qp", errno ? errno : EINVAL);
    Dead();
    return;
  }
  type_ = a.qp_type;
  Hold(info[0], pd);
  Hold(info[1], scq);
  Hold(info[2], rcq != scq ? rcq : nullptr);
  if (srq) Hold(o.Get("srq"), srq);
  Track(env, this);
}

int RdmaQp::Destroy() { return Release(qp_, v_->destroy_qp); }

Napi::Value RdmaQp::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  struct ibv_qp_attr a = {};
  struct ibv_qp_init_attr ia = {};
  int r = v_->query_qp(qp_, &a, IBV_QP_STATE, &ia);
  if (r) {
    ThrowSys(env, "ibv_query_qp", r);
    return env.Undefined();
  }
  static const char* states[] = {"RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR"};
  Napi::Object o = Napi::Object::New(env);
  o.Set("qpNum", qp_->qp_num);
  o.Set("state", a.qp_state <= IBV_QPS_ERR ? states[a.qp_state] : "UNKNOWN");
  o.Set("type", type_ == IBV_QPT_RC ? "RC" : "UD");
  return o;
}

Napi::Value RdmaQp::Modify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  if (!info[0].IsObject()) {
    ThrowType(env, "attributes must be an object");
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  struct ibv_qp_attr a = {};
  int mask = 0;
  bool ok = true;
  auto has = [&](const char* k) { return !o.Get(k).IsUndefined(); };
  if (has("state")) {
    std::string s = o.Get("state").IsString() ? o.Get("state").As<Napi::String>().Utf8Value() : "";
    static const char* states[] = {"RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR"};
    int st = -1;
    for (int i = 0; i < 7; i++)
      if (s == states[i]) st = i;
    if (st < 0) {
      ThrowType(env, "state must be one of RESET, INIT, RTR, RTS, SQD, SQE, ERR");
      return env.Undefined();
    }
    a.qp_state = static_cast<enum ibv_qp_state>(st);
    mask |= IBV_QP_STATE;
  }
  if (has("portNum")) {
    a.port_num = static_cast<uint8_t>(U32(env, o, "portNum", 1, &ok));
    mask |= IBV_QP_PORT;
  }
  if (has("pkeyIndex")) {
    a.pkey_index = static_cast<uint16_t>(U32(env, o, "pkeyIndex", 0, &ok));
    mask |= IBV_QP_PKEY_INDEX;
  }
  if (has("access")) {
    a.qp_access_flags = U32(env, o, "access", 0, &ok);
    mask |= IBV_QP_ACCESS_FLAGS;
  }
  if (has("qkey")) {
    a.qkey = U32(env, o, "qkey", 0, &ok);
    mask |= IBV_QP_QKEY;
  }
  if (has("pathMtu")) {
    uint32_t mtu = U32(env, o, "pathMtu", 1024, &ok);
    int e = mtu == 256    ? IBV_MTU_256
            : mtu == 512  ? IBV_MTU_512
            : mtu == 1024 ? IBV_MTU_1024
            : mtu == 2048 ? IBV_MTU_2048
            : mtu == 4096 ? IBV_MTU_4096
                          : 0;
    if (!e && ok) {
      ThrowRange(env, "pathMtu must be 256, 512, 1024, 2048 or 4096");
      return env.Undefined();
    }
    a.path_mtu = static_cast<enum ibv_mtu>(e);
    mask |= IBV_QP_PATH_MTU;
  }
  if (has("destQpNum")) {
    a.dest_qp_num = U32(env, o, "destQpNum", 0, &ok);
    mask |= IBV_QP_DEST_QPN;
  }
  if (has("rqPsn")) {
    a.rq_psn = U32(env, o, "rqPsn", 0, &ok);
    mask |= IBV_QP_RQ_PSN;
  }
  if (has("sqPsn")) {
    a.sq_psn = U32(env, o, "sqPsn", 0, &ok);
    mask |= IBV_QP_SQ_PSN;
  }
  if (has("maxDestRdAtomic")) {
    a.max_dest_rd_atomic = static_cast<uint8_t>(U32(env, o, "maxDestRdAtomic", 1, &ok));
    mask |= IBV_QP_MAX_DEST_RD_ATOMIC;
  }
  if (has("maxRdAtomic")) {
    a.max_rd_atomic = static_cast<uint8_t>(U32(env, o, "maxRdAtomic", 1, &ok));
    mask |= IBV_QP_MAX_QP_RD_ATOMIC;
  }
  if (has("minRnrTimer")) {
    a.min_rnr_timer = static_cast<uint8_t>(U32(env, o, "minRnrTimer", 12, &ok));
    mask |= IBV_QP_MIN_RNR_TIMER;
  }
  if (has("timeout")) {
    a.timeout = static_cast<uint8_t>(U32(env, o, "timeout", 14, &ok));
    mask |= IBV_QP_TIMEOUT;
  }
  if (has("retryCnt")) {
    a.retry_cnt = static_cast<uint8_t>(U32(env, o, "retryCnt", 7, &ok));
    mask |= IBV_QP_RETRY_CNT;
  }
  if (has("rnrRetry")) {
    a.rnr_retry = static_cast<uint8_t>(U32(env, o, "rnrRetry", 7, &ok));
    mask |= IBV_QP_RNR_RETRY;
  }
  if (has("dgid")) {
    if (!ParseGid(env, o.Get("dgid"), &a.ah_attr.grh.dgid)) return env.Undefined();
    a.ah_attr.is_global = 1;
    a.ah_attr.grh.sgid_index = static_cast<uint8_t>(U32(env, o, "sgidIndex", 0, &ok));
    a.ah_attr.grh.hop_limit = static_cast<uint8_t>(U32(env, o, "hopLimit", 1, &ok));
    a.ah_attr.port_num = static_cast<uint8_t>(U32(env, o, "ahPort", 1, &ok));
    mask |= IBV_QP_AV;
  }
  if (!ok) return env.Undefined();
  int r = v_->modify_qp(qp_, &a, mask);
  if (r) ThrowSys(env, "ibv_modify_qp", r, "attributes or state transition not valid for this QP");
  return env.Undefined();
}

Napi::Value RdmaQp::PostSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  SendBatch b;
  if (!ReadSendWrs(env, info[0], type_, &b) || b.wrs.empty() || !Live(env)) return env.Undefined();
  struct ibv_send_wr* bad = nullptr;
  int r = ibv_post_send(qp_, b.wrs.data(), &bad);
  if (r) ThrowPostError(env, "ibv_post_send", r, bad ? bad - b.wrs.data() : 0);
  return env.Undefined();
}

Napi::Value RdmaQp::PostRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  RecvBatch b;
  if (!ReadRecvWrs(env, info[0], &b) || b.wrs.empty() || !Live(env)) return env.Undefined();
  struct ibv_recv_wr* bad = nullptr;
  int r = ibv_post_recv(qp_, b.wrs.data(), &bad);
  if (r) ThrowPostError(env, "ibv_post_recv", r, bad ? bad - b.wrs.data() : 0);
  return env.Undefined();
}

}  // namespace sos
