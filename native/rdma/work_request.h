// Work requests read from JS: the batches that QPs, SRQs and prepared sends post.
// Work requests are read in raw N-API with the env's cached keys, each field
// once. JS getters may run while a request is read (and close things): the
// MRs, AHs and the QP are checked again after the last read, before posting.
#pragma once
#include <infiniband/verbs.h>
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/common.h"
#include "rdma/keys.h"

namespace sos {

class RdmaAh;
class RdmaMr;

// n = the length of array v (false, with a TypeError, when it is not an array).
bool ArrayArg(napi_env env, napi_value v, uint32_t* n);

// What a batch of work requests refers to, checked again before posting.
struct Refs {
  std::vector<RdmaMr*> mrs;      // one per SGE
  std::vector<napi_value> mrJs;  // their JS objects (valid in this call)
  std::vector<RdmaAh*> ahs;
  std::vector<napi_value> ahJs;
  bool Live(napi_env env) const;
  static bool Fail(napi_env env, const char* msg) {
    ThrowState(Napi::Env(env), "ERR_CLOSED", msg);
    return false;
  }
  // An MR over JS memory whose ArrayBuffer was detached: nothing is posted.
  static bool DetachedError(napi_env env) {
    ThrowState(Napi::Env(env), "ERR_MR_DETACHED",
               "a memory region of these work requests is over an ArrayBuffer that was detached (transferred): "
               "its memory is no longer JavaScript's, nothing was posted");
    return false;
  }
};

// [{ mr, offset, length }] appended to *out; bounds checked against each MR.
bool ReadSges(napi_env env, Keys* k, napi_value v, std::vector<struct ibv_sge>* out, Refs* refs);

// Send or receive work requests read from JS: wrs[i].sg_list points into
// sges, set (with the chain) once all are read.
template <typename Wr>
struct Batch {
  std::vector<Wr> wrs;
  std::vector<struct ibv_sge> sges;
  std::vector<uint32_t> firstSge;  // per WR
  Refs refs;
  // n requests to read from arr (false, with a TypeError, when it is not an array).
  bool Begin(napi_env env, napi_value arr, uint32_t* n) {
    if (!ArrayArg(env, arr, n)) return false;
    wrs.assign(*n, Wr{});
    firstSge.assign(*n, 0);
    return true;
  }
  // Request i's SGEs from v.
  bool Sges(napi_env env, Keys* k, uint32_t i, napi_value v) {
    firstSge[i] = static_cast<uint32_t>(sges.size());
    if (!ReadSges(env, k, v, &sges, &refs)) return false;
    wrs[i].num_sge = static_cast<int>(sges.size() - firstSge[i]);
    return true;
  }
  // After the last read: nothing thrown by a getter, nothing closed meanwhile; then link.
  bool Finish(napi_env env) {
    if (Napi::Env(env).IsExceptionPending() || !refs.Live(env)) return false;
    for (size_t i = 0; i < wrs.size(); i++) {
      wrs[i].sg_list = wrs[i].num_sge ? &sges[firstSge[i]] : nullptr;
      wrs[i].next = i + 1 < wrs.size() ? &wrs[i + 1] : nullptr;
    }
    return true;
  }
};
using SendBatch = Batch<struct ibv_send_wr>;
using RecvBatch = Batch<struct ibv_recv_wr>;

bool IsAtomic(enum ibv_wr_opcode op);

// [{ wrId, opcode, sge, signaled, remoteAddr, rkey, imm, compareAdd, swap, ah, remoteQpn, remoteQkey }]
bool ReadSendWrs(napi_env env, napi_value arr, enum ibv_qp_type type, SendBatch* b);

// Receive work requests from [{ wrId, sge }] (QP and SRQ alike).
bool ReadRecvWrs(napi_env env, napi_value arr, RecvBatch* b);

// A failed post: SystemError with failedIndex, the first request not posted.
void ThrowPostError(Napi::Env env, const char* call, int r, ptrdiff_t failedIndex);

}  // namespace sos
