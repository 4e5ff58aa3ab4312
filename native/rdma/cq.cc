#include "rdma/cq.h"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "core/offthread.h"

#include "rdma/context.h"
#include "rdma/keys.h"

namespace sos {

const napi_type_tag RdmaChannel::kTag = {0x7d1a2b3c4d5e6f76ULL, 0x0a1b2c3d4e5f6077ULL};

Napi::Function RdmaChannel::Init(Napi::Env env) {
  return Define(env, "RdmaChannel",
                {InstanceMethod("start", &RdmaChannel::Start), InstanceMethod("ref", &RdmaChannel::Ref)});
}

RdmaChannel::RdmaChannel(const Napi::CallbackInfo& info) : VerbsWrap(info, 5) {
  Napi::Env env = info.Env();
  RdmaContext* c = LiveNode<RdmaContext>(env, info[0], "context");
  if (!c) {
    Dead();
    return;
  }
  v_ = c->verbs();
  ch_ = v_->create_comp_channel(c->ctx());
  if (!ch_) {
    ThrowSys(env, "ibv_create_comp_channel", errno ? errno : ENOMEM);
    Dead();
    return;
  }
  if (!SetNonBlocking(env, ch_->fd)) {
    Dead();
    return;
  }
  Hold(info[0], c);
  Track(env, this);
}

int RdmaChannel::Destroy() {
  events_.Stop();
  return Release(ch_, v_->destroy_comp_channel);
}

Napi::Value RdmaChannel::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  events_.Start(info, ch_->fd, [this] { OnEvents(); });
  return env.Undefined();
}

Napi::Value RdmaChannel::Ref(const Napi::CallbackInfo& info) {
  events_.SetRef(info[0].ToBoolean());
  return info.Env().Undefined();
}

const napi_type_tag RdmaCq::kTag = {0x7d1a2b3c4d5e6f73ULL, 0x0a1b2c3d4e5f6074ULL};

Napi::Function RdmaCq::Init(Napi::Env env) {
  return Define(
      env, "RdmaCq",
      {InstanceMethod("poll", &RdmaCq::Poll), InstanceMethod("pollSpin", &RdmaCq::PollSpin),
       InstanceMethod("pollInto", &RdmaCq::PollInto), InstanceMethod("requestNotify", &RdmaCq::RequestNotify)});
}

RdmaCq::RdmaCq(const Napi::CallbackInfo& info) : VerbsWrap(info, 4) {
  Napi::Env env = info.Env();
  RdmaContext* c = LiveNode<RdmaContext>(env, info[0], "context");
  if (!c) {
    Dead();
    return;
  }
  uint64_t cqe;
  if (!ToU64(env, info[1], "cqe", &cqe)) {
    Dead();
    return;
  }
  if (cqe < 1 || cqe > INT32_MAX) {
    ThrowRange(env, "cqe must be positive");
    Dead();
    return;
  }
  RdmaChannel* ch = nullptr;
  if (!info[2].IsUndefined() && !info[2].IsNull()) {
    ch = LiveNode<RdmaChannel>(env, info[2], "channel");
    if (!ch) {
      Dead();
      return;
    }
  }
  v_ = c->verbs();
  cq_ = v_->create_cq(c->ctx(), static_cast<int>(cqe), this, ch ? ch->channel() : nullptr, 0);
  if (!cq_) {
    ThrowSys(env, "ibv_create_cq", errno ? errno : EINVAL);
    Dead();
    return;
  }
  Hold(info[0], c);
  if (ch) { Hold(info[2], ch); }
  Track(env, this);
}

int RdmaCq::Destroy() { return Release(cq_, v_->destroy_cq); }

Napi::Value RdmaCq::Poll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t max = 16;
  bool has = false;
  if (!ReadUint(env, info[0], "max", UINT64_MAX, &max, &has)) return env.Undefined();
  max = has ? std::min<uint64_t>(std::max<uint64_t>(max, 1), 256) : 16;
  struct ibv_wc wc[256];
  int n = ibv_poll_cq(cq_, static_cast<int>(max), wc);
  if (n < 0) {
    ThrowSys(env, "ibv_poll_cq", EIO);
    return env.Undefined();
  }
  return ToJs(env, wc, n);
}

Napi::Value RdmaCq::PollSpin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t max = 16, spin = 100;
  if (!info[0].IsUndefined() && !ToU64(env, info[0], "max", &max)) return env.Undefined();
  if (!info[1].IsUndefined() && !ToU64(env, info[1], "spinMicros", &spin)) return env.Undefined();
  max = std::min<uint64_t>(std::max<uint64_t>(max, 1), 256);
  spin = std::min<uint64_t>(spin, 100000);
  struct ibv_wc wc[256];
  auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin);
  int n;
  do { n = ibv_poll_cq(cq_, static_cast<int>(max), wc); } while (n == 0 && std::chrono::steady_clock::now() < until);
  if (n < 0) {
    ThrowSys(env, "ibv_poll_cq", EIO);
    return env.Undefined();
  }
  return ToJs(env, wc, n);
}

Napi::Value RdmaCq::RequestNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  if (!cq_->channel) {
    ThrowState(env, "ERR_NO_CHANNEL", "completion queue was created without a completion channel");
    return env.Undefined();
  }
  int r = ibv_req_notify_cq(cq_, info[0].ToBoolean() ? 1 : 0);
  if (r) ThrowSys(env, "ibv_req_notify_cq", r);
  return env.Undefined();
}

Napi::Value RdmaCq::PollInto(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  if (!Live(info.Env())) return info.Env().Undefined();
  napi_value arr = info[0];
  bool isTa = false;
  napi_is_typedarray(env, arr, &isTa);
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  if (isTa) napi_get_typedarray_info(env, arr, &type, &length, &data, nullptr, nullptr);
  if (!isTa || (type != napi_float64_array && type != napi_biguint64_array)) {
    ThrowType(info.Env(), "out must be a Float64Array or a BigUint64Array");
    return info.Env().Undefined();
  }
  uint64_t max = 256;
  if (!ReadUint(env, info[1], "max", 256, &max)) return info.Env().Undefined();
  if (max == 0 || max > length / kWcSlots) max = std::min<uint64_t>(length / kWcSlots, 256);
  if (max == 0 || !data) {
    ThrowRange(info.Env(), "out must hold at least one completion (" + std::to_string(kWcSlots) + " elements)");
    return info.Env().Undefined();
  }
  struct ibv_wc wc[256];
  int n = ibv_poll_cq(cq_, static_cast<int>(max), wc);
  if (n < 0) {
    ThrowSys(info.Env(), "ibv_poll_cq", EIO);
    return info.Env().Undefined();
  }
  for (int i = 0; i < n; i++) {
    uint64_t f[kWcSlots] = {wc[i].wr_id,
                            static_cast<uint64_t>(wc[i].status),
                            static_cast<uint64_t>(wc[i].opcode),
                            wc[i].byte_len,
                            wc[i].wc_flags & IBV_WC_WITH_IMM ? ntohl(wc[i].imm_data) : 0u,
                            wc[i].qp_num,
                            wc[i].src_qp,
                            static_cast<uint64_t>(wc[i].wc_flags)};
    if (type == napi_float64_array) {
      double* d = static_cast<double*>(data) + i * kWcSlots;
      for (int j = 0; j < kWcSlots; j++) d[j] = static_cast<double>(f[j]);
    } else {
      std::memcpy(static_cast<uint64_t*>(data) + i * kWcSlots, f, sizeof(f));
    }
  }
  napi_value count;
  napi_create_uint32(env, static_cast<uint32_t>(n), &count);
  return Napi::Value(env, count);
}

Napi::Value RdmaCq::ToJs(Napi::Env env, struct ibv_wc* wc, int n) {
  static const char* ops[] = {"SEND",      "RDMA_WRITE", "RDMA_READ", "COMP_SWAP",
                              "FETCH_ADD", "BIND_MW",    "LOCAL_INV", "TSO"};
  if (n == 0) return Napi::Value(env, DataKeys::For(env)->EmptyArray());
  Keys keys(env);
  Keys* k = &keys;
  napi_value out;
  napi_create_array_with_length(env, n, &out);
  for (int i = 0; i < n; i++) {
    napi_value o, x;
    napi_create_object(env, &o);
    napi_create_bigint_uint64(env, wc[i].wr_id, &x);
    k->Set(o, Key::wrId, x);
    napi_create_string_latin1(env, v_->wc_status_str(wc[i].status), NAPI_AUTO_LENGTH, &x);
    k->Set(o, Key::status, x);
    napi_get_boolean(env, wc[i].status == IBV_WC_SUCCESS, &x);
    k->Set(o, Key::ok, x);
    const char* op = wc[i].opcode & IBV_WC_RECV
                         ? (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM ? "RECV_RDMA_WITH_IMM" : "RECV")
                         : (wc[i].opcode < 8 ? ops[wc[i].opcode] : "OTHER");
    napi_create_string_latin1(env, op, NAPI_AUTO_LENGTH, &x);
    k->Set(o, Key::opcode, x);
    napi_create_uint32(env, wc[i].byte_len, &x);
    k->Set(o, Key::byteLen, x);
    napi_create_uint32(env, wc[i].qp_num, &x);
    k->Set(o, Key::qpNum, x);
    napi_create_uint32(env, wc[i].src_qp, &x);
    k->Set(o, Key::srcQp, x);
    if (wc[i].wc_flags & IBV_WC_WITH_IMM) {
      napi_create_uint32(env, ntohl(wc[i].imm_data), &x);
      k->Set(o, Key::imm, x);
    }
    napi_set_element(env, out, i, o);
  }
  return Napi::Value(env, out);
}

void RdmaChannel::OnEvents() {
  struct ibv_cq* cq;
  void* cqctx;
  while (ch_ && v_->get_cq_event(ch_, &cq, &cqctx) == 0) {
    v_->ack_cq_events(cq, 1);
    auto* node = static_cast<RdmaCq*>(cqctx);
    if (events_.callback().IsEmpty() || !node || node->closed() || !CanRunJs(env_)) continue;
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    events_.callback().MakeCallback(env.Global(), {node->JsObject()});
  }
}

}  // namespace sos
