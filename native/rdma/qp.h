// Queue pairs (RC and UD): state transitions, posting sends and receives.
#pragma once
#include <napi.h>

#include "rdma/verbs.h"

namespace sos {

// ---------------- queue pair ----------------
class RdmaQp : public VerbsWrap<RdmaQp> {
 public:
  static constexpr const char* kName = "QueuePair";
  static constexpr const char* kWhat = "queue pair";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env);
  // new RdmaQp(pd, sendCq, recvCq, { type: 'RC'|'UD', maxSendWr, maxRecvWr, maxSendSge, maxRecvSge, maxInlineData,
  // sigAll })
  explicit RdmaQp(const Napi::CallbackInfo& info);
  ~RdmaQp() override { CloseTree(); }

 private:
  int Destroy() override;
  Napi::Value Info(const Napi::CallbackInfo& info);
  // modify({ state, portNum, pkeyIndex, access, qkey, pathMtu, destQpNum, rqPsn, sqPsn,
  //          maxDestRdAtomic, maxRdAtomic, minRnrTimer, timeout, retryCnt, rnrRetry,
  //          dgid, sgidIndex, hopLimit, ahPort }): the attribute mask is the keys given
  //          (dgid and its companions form the address vector).
  Napi::Value Modify(const Napi::CallbackInfo& info);

  // postSend([{ wrId, opcode, sge, signaled, remoteAddr, rkey, imm, compareAdd, swap, ah, remoteQpn, remoteQkey }]):
  // one ibv_post_send.
  Napi::Value PostSend(const Napi::CallbackInfo& info);

  // postRecv([{ wrId, sge }]): one ibv_post_recv.
  Napi::Value PostRecv(const Napi::CallbackInfo& info);

 public:
  struct ibv_qp* qp() const {
    return qp_;
  }
  enum ibv_qp_type type() const { return type_; }

 private:
  const Verbs* v_ = nullptr;
  struct ibv_qp* qp_ = nullptr;
  enum ibv_qp_type type_ = IBV_QPT_RC;
};

}  // namespace sos
