#include "rdma/prepared.h"

#include <arpa/inet.h>

#include <algorithm>
#include <string>

#include "rdma/ah.h"
#include "rdma/pd.h"
#include "rdma/qp.h"

namespace sos {

const napi_type_tag RdmaPrepared::kTag = {0x7d1a2b3c4d5e6f79ULL, 0x0a1b2c3d4e5f607aULL};

Napi::Function RdmaPrepared::Init(Napi::Env env) {
  return Define(env, "RdmaPrepared",
                {InstanceMethod("post", &RdmaPrepared::Post), InstanceMethod("layout", &RdmaPrepared::Layout),
                 InstanceMethod("read", &RdmaPrepared::Read)});
}

RdmaPrepared::RdmaPrepared(const Napi::CallbackInfo& info) : VerbsWrap(info, 2) {
  Napi::Env env = info.Env();
  RdmaQp* qp = LiveNode<RdmaQp>(env, info[0], "qp");
  if (!qp || !ReadSendWrs(env, info[1], qp->type(), &b_) || !qp->Live(env)) {
    Dead();
    return;
  }
  if (b_.wrs.empty()) {
    ThrowRange(env, "a prepared send needs at least one work request");
    Dead();
    return;
  }
  for (const auto& w : b_.wrs) {
    uint64_t raddr = IsAtomic(w.opcode)         ? w.wr.atomic.remote_addr
                     : qp->type() == IBV_QPT_UD ? 0
                                                : w.wr.rdma.remote_addr;
    if (w.wr_id > kMaxSafe || raddr > kMaxSafe) {
      ThrowRange(env, "prepared work requests take wrId and remoteAddr up to 2^53 (they travel as doubles)");
      Dead();
      return;
    }
  }
  uint32_t at = 0;
  for (size_t i = 0; i < b_.wrs.size(); i++) {
    base_.push_back(at);
    at += kPrepWrSlots + 2 * static_cast<uint32_t>(b_.wrs[i].num_sge);
  }
  base_.push_back(at);
  for (RdmaMr* m : b_.refs.mrs)
    mrLen_.push_back(m->mr()->length), mrAddr_.push_back(reinterpret_cast<uint64_t>(m->mr()->addr));
  qp_ = qp->qp();
  Hold(info[0], qp);
  // Each parent once.
  std::vector<VerbsNode*> seen;
  auto once = [&](napi_value js, VerbsNode* n) {
    if (std::find(seen.begin(), seen.end(), n) != seen.end()) return;
    seen.push_back(n);
    Hold(Napi::Value(env, js), n);
  };
  for (size_t i = 0; i < b_.refs.mrs.size(); i++) {
    RdmaMr* m = b_.refs.mrs[i];
    if (std::find(mrs_.begin(), mrs_.end(), m) == mrs_.end()) mrs_.push_back(m);
    once(b_.refs.mrJs[i], m);
  }
  for (size_t i = 0; i < b_.refs.ahs.size(); i++) once(b_.refs.ahJs[i], b_.refs.ahs[i]);
  b_.refs = Refs();  // napi_values live only in this call
  Track(env, this);
}

int RdmaPrepared::Destroy() {
  qp_ = nullptr;
  return 0;
}

Napi::Value RdmaPrepared::Layout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  Napi::Array a = Napi::Array::New(env, base_.size());
  for (size_t i = 0; i < base_.size(); i++) a.Set(static_cast<uint32_t>(i), base_[i]);
  return a;
}

double* RdmaPrepared::Ctl(napi_env env, napi_value v, bool required) {
  bool isTa = false;
  if (v) napi_is_typedarray(env, v, &isTa);
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  if (isTa) napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr);
  if (!isTa || type != napi_float64_array) {
    if (required || !IsUndefined(env, v)) ThrowType(Napi::Env(env), "ctl must be a Float64Array");
    return nullptr;
  }
  if (length < base_.back() || !data) {
    ThrowRange(Napi::Env(env), "ctl must hold " + std::to_string(base_.back()) + " numbers");
    return nullptr;
  }
  return static_cast<double*>(data);
}

Napi::Value RdmaPrepared::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  double* c = Ctl(env, info[0], true);
  if (!c) return env.Undefined();
  size_t sge = 0;
  for (size_t i = 0; i < b_.wrs.size(); i++) {
    const auto& w = b_.wrs[i];
    double* d = c + base_[i];
    bool atomic = IsAtomic(w.opcode), ud = !atomic && type_ud();
    d[kPrepWrId] = static_cast<double>(w.wr_id);
    d[kPrepRemoteAddr] = static_cast<double>(atomic ? w.wr.atomic.remote_addr : ud ? 0 : w.wr.rdma.remote_addr);
    d[kPrepRkey] = atomic ? w.wr.atomic.rkey : ud ? 0 : w.wr.rdma.rkey;
    d[kPrepImm] = ntohl(w.imm_data);
    for (int j = 0; j < w.num_sge; j++, sge++) {
      d[kPrepWrSlots + 2 * j] = static_cast<double>(b_.sges[sge].addr - mrAddr_[sge]);
      d[kPrepWrSlots + 2 * j + 1] = b_.sges[sge].length;
    }
  }
  return env.Undefined();
}

Napi::Value RdmaPrepared::Post(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  if (!Live(info.Env())) return info.Env().Undefined();
  double* c = Ctl(env, info[0], false);
  if (!c && Napi::Env(env).IsExceptionPending()) return info.Env().Undefined();
  uint64_t count = b_.wrs.size();
  bool has = false;
  if (!ReadUint(env, info[1], "count", b_.wrs.size(), &count, &has)) return info.Env().Undefined();
  if (!has) count = b_.wrs.size();
  if (count == 0) return info.Env().Undefined();
  for (RdmaMr* m : mrs_)
    if (m->Detached(env)) {
      Refs::DetachedError(env);
      return info.Env().Undefined();
    }
  if (c) {
    size_t sge = 0;
    for (size_t i = 0; i < count; i++) {
      auto& w = b_.wrs[i];
      const double* d = c + base_[i];
      const char* bad = nullptr;
      if (!Whole(d[kPrepWrId], kMaxSafe))
        bad = "wrId";
      else if (!Whole(d[kPrepRemoteAddr], kMaxSafe))
        bad = "remoteAddr";
      else if (!Whole(d[kPrepRkey], UINT32_MAX))
        bad = "rkey";
      else if (!Whole(d[kPrepImm], UINT32_MAX))
        bad = "imm";
      for (int j = 0; !bad && j < w.num_sge; j++) {
        double off = d[kPrepWrSlots + 2 * j], len = d[kPrepWrSlots + 2 * j + 1];
        uint64_t mlen = mrLen_[sge + j];
        if (!Whole(off, static_cast<double>(mlen)) ||
            !Whole(len, std::min<double>(static_cast<double>(mlen) - off, UINT32_MAX)))
          bad = "an sge (outside its memory region)";
      }
      if (bad) {
        ThrowRange(info.Env(), "prepared work request " + std::to_string(i) + ": " + bad + " out of range");
        return info.Env().Undefined();
      }
      w.wr_id = static_cast<uint64_t>(d[kPrepWrId]);
      uint64_t raddr = static_cast<uint64_t>(d[kPrepRemoteAddr]);
      uint32_t rkey = static_cast<uint32_t>(d[kPrepRkey]);
      if (IsAtomic(w.opcode))
        w.wr.atomic.remote_addr = raddr, w.wr.atomic.rkey = rkey;
      else if (!type_ud())
        w.wr.rdma.remote_addr = raddr, w.wr.rdma.rkey = rkey;
      w.imm_data = htonl(static_cast<uint32_t>(d[kPrepImm]));
      for (int j = 0; j < w.num_sge; j++, sge++) {
        b_.sges[sge].addr = mrAddr_[sge] + static_cast<uint64_t>(d[kPrepWrSlots + 2 * j]);
        b_.sges[sge].length = static_cast<uint32_t>(d[kPrepWrSlots + 2 * j + 1]);
      }
    }
  }
  struct ibv_send_wr* last = &b_.wrs[count - 1];
  struct ibv_send_wr* after = last->next;
  last->next = nullptr;
  struct ibv_send_wr* bad = nullptr;
  int r = ibv_post_send(qp_, b_.wrs.data(), &bad);
  last->next = after;
  if (r) ThrowPostError(info.Env(), "ibv_post_send", r, bad ? bad - b_.wrs.data() : 0);
  return info.Env().Undefined();
}

}  // namespace sos
