// Completion queues and the completion channels that report them on the libuv loop.
#pragma once
#include <napi.h>

#include "core/fd_events.h"
#include "rdma/verbs.h"

namespace sos {

// ---------------- completion channel ----------------
// Completion events on the libuv loop: each event is acked at once (a CQ
// cannot be destroyed with unacked events) and reported with its CQ.
class RdmaChannel : public VerbsWrap<RdmaChannel> {
 public:
  static constexpr const char* kName = "CompletionChannel";
  static constexpr const char* kWhat = "completion channel";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env);
  explicit RdmaChannel(const Napi::CallbackInfo& info);
  ~RdmaChannel() override { CloseTree(); }
  struct ibv_comp_channel* channel() const {
    return ch_;
  }

 private:
  int Destroy() override;
  // start(cb(cq)): cb gets the JS CompletionQueue object that has completions.
  Napi::Value Start(const Napi::CallbackInfo& info);
  // ref(bool): whether waiting for completions keeps the process alive.
  Napi::Value Ref(const Napi::CallbackInfo& info);
  void OnEvents();
  const Verbs* v_ = nullptr;
  struct ibv_comp_channel* ch_ = nullptr;
  FdEvents events_;
};

// ---------------- completion queue ----------------
// pollInto's layout: numbers per completion, in this order.
enum WcSlot { kWcWrId, kWcStatus, kWcOpcode, kWcByteLen, kWcImm, kWcQpNum, kWcSrcQp, kWcFlags, kWcSlots };
class RdmaCq : public VerbsWrap<RdmaCq> {
 public:
  static constexpr const char* kName = "CompletionQueue";
  static constexpr const char* kWhat = "completion queue";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env);
  explicit RdmaCq(const Napi::CallbackInfo& info);
  ~RdmaCq() override { CloseTree(); }
  struct ibv_cq* cq() const {
    return cq_;
  }

 private:
  int Destroy() override;
  // poll(max) -> completions (never blocks)
  Napi::Value Poll(const Napi::CallbackInfo& info);
  // pollSpin(max, spinMicros): busy-poll in C++ until a completion arrives or
  // the (bounded) time is up — for latency-critical paths; blocks this thread.
  Napi::Value PollSpin(const Napi::CallbackInfo& info);
  // requestNotify(solicitedOnly): arm the CQ; the next completion raises an event on its channel.
  Napi::Value RequestNotify(const Napi::CallbackInfo& info);
  // pollInto(out: Float64Array | BigUint64Array, max?) -> count: completions
  // written as kWcSlots numbers each (the layout is WcSlot), no objects made.
  // A Float64Array holds wr_ids exactly up to 2^53.
  Napi::Value PollInto(const Napi::CallbackInfo& info);
  // Completions as objects; an empty poll returns one shared frozen [].
  Napi::Value ToJs(Napi::Env env, struct ibv_wc* wc, int n);
  const Verbs* v_ = nullptr;
  struct ibv_cq* cq_ = nullptr;
};

}  // namespace sos
