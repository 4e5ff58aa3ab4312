#include "rdma/work_request.h"

#include <arpa/inet.h>

#include <cstring>
#include <string>

#include "rdma/ah.h"
#include "rdma/pd.h"

namespace sos {

namespace {

// A verbs object given directly or as the typed layer's wrapper ({ raw }).
template <typename T>
T* NodeArg(napi_env env, Keys* k, napi_value v) {
  Napi::Value val(env, v);
  if (T* n = UnwrapTagged<T>(val, &T::kTag)) return n;
  if (!val.IsObject()) return nullptr;
  return UnwrapTagged<T>(Napi::Value(env, k->Read(v, Key::raw)), &T::kTag);
}

napi_value ObjectAt(napi_env env, napi_value arr, uint32_t i, const char* what) {
  napi_value v = nullptr;
  napi_valuetype t = napi_undefined;
  if (napi_get_element(env, arr, i, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok || t != napi_object) {
    if (!Napi::Env(env).IsExceptionPending()) ThrowType(Napi::Env(env), std::string(what) + " must be objects");
    return nullptr;
  }
  return v;
}

bool ReadOpcode(napi_env env, napi_value v, enum ibv_wr_opcode* op) {
  static const struct {
    const char* name;
    enum ibv_wr_opcode op;
  } ops[] = {{"SEND", IBV_WR_SEND},
             {"SEND_WITH_IMM", IBV_WR_SEND_WITH_IMM},
             {"RDMA_WRITE", IBV_WR_RDMA_WRITE},
             {"RDMA_WRITE_WITH_IMM", IBV_WR_RDMA_WRITE_WITH_IMM},
             {"RDMA_READ", IBV_WR_RDMA_READ},
             {"ATOMIC_CMP_AND_SWP", IBV_WR_ATOMIC_CMP_AND_SWP},
             {"ATOMIC_FETCH_AND_ADD", IBV_WR_ATOMIC_FETCH_AND_ADD}};
  napi_valuetype t = napi_undefined;
  if (v) napi_typeof(env, v, &t);
  char buf[24] = "";
  size_t len = 0;
  if (t == napi_string) napi_get_value_string_latin1(env, v, buf, sizeof(buf), &len);
  for (const auto& o : ops)
    if (t == napi_string && std::strcmp(buf, o.name) == 0) {
      *op = o.op;
      return true;
    }
  ThrowType(Napi::Env(env),
            "opcode must be SEND, SEND_WITH_IMM, RDMA_WRITE, RDMA_WRITE_WITH_IMM, RDMA_READ, "
            "ATOMIC_CMP_AND_SWP or ATOMIC_FETCH_AND_ADD");
  return false;
}

// Reads [{ wrId, sge, ... }]: fields(k, obj, wr) reads the rest of each request.
template <typename Wr, typename F>
bool ReadBatch(napi_env env, napi_value arr, Batch<Wr>* b, F fields) {
  Keys keys(env);
  uint32_t n = 0;
  if (!b->Begin(env, arr, &n)) return false;
  for (uint32_t i = 0; i < n; i++) {
    napi_value o = ObjectAt(env, arr, i, "work requests");
    uint64_t id;
    if (!o || !ReadUint(env, keys.Read(o, Key::wrId), "wrId", UINT64_MAX, &id)) return false;
    b->wrs[i].wr_id = id;
    if (!fields(&keys, o, b->wrs[i]) || !b->Sges(env, &keys, i, keys.Read(o, Key::sge))) return false;
  }
  // A getter may have thrown (its read came back undefined) or closed what was read.
  return b->Finish(env);
}

}  // namespace

bool ArrayArg(napi_env env, napi_value v, uint32_t* n) {
  bool isArray = false;
  if (v) napi_is_array(env, v, &isArray);
  if (!isArray) {
    ThrowType(Napi::Env(env), "work requests must be an array");
    return false;
  }
  napi_get_array_length(env, v, n);
  return true;
}

bool Refs::Live(napi_env env) const {
  for (RdmaMr* m : mrs) {
    if (m->closed()) return Fail(env, "a memory region of these work requests was closed while they were read");
    if (m->Detached(env)) return DetachedError(env);
  }
  for (RdmaAh* a : ahs)
    if (a->closed()) return Fail(env, "an address handle of these work requests was closed while they were read");
  return true;
}

// [{ mr, offset, length }] appended to *out; bounds checked against each MR.
bool ReadSges(napi_env env, Keys* k, napi_value v, std::vector<struct ibv_sge>* out, Refs* refs) {
  if (IsUndefined(env, v)) return true;
  bool isArray = false;
  napi_is_array(env, v, &isArray);
  if (!isArray) {
    ThrowType(Napi::Env(env), "sge must be an array of { mr, offset, length }");
    return false;
  }
  uint32_t n = 0;
  napi_get_array_length(env, v, &n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value s = ObjectAt(env, v, i, "sge entries");
    if (!s) return false;
    napi_value mrv = k->Read(s, Key::mr);
    uint64_t off = 0, len = 0;
    if (!ReadUint(env, k->Read(s, Key::offset), "sge.offset", UINT64_MAX, &off)) return false;
    bool has = false;
    if (!ReadUint(env, k->Read(s, Key::length), "sge.length", UINT64_MAX, &len, &has)) return false;
    if (!has) {
      ThrowType(Napi::Env(env), "sge.length must be a number or bigint");
      return false;
    }
    // The MR last: no JS runs after this check.
    RdmaMr* mr = mrv ? NodeArg<RdmaMr>(env, k, mrv) : nullptr;
    if (!mr) {
      ThrowType(Napi::Env(env), "sge.mr must be a MemoryRegion");
      return false;
    }
    if (mr->closed()) {
      ThrowState(Napi::Env(env), "ERR_CLOSED", "sge.mr (MemoryRegion) is closed");
      return false;
    }
    if (mr->Detached(env)) return Refs::DetachedError(env);
    const struct ibv_mr* m = mr->mr();
    if (off > m->length || len > m->length - off || len > UINT32_MAX) {
      ThrowRange(Napi::Env(env), "sge is outside its memory region");
      return false;
    }
    out->push_back({reinterpret_cast<uint64_t>(m->addr) + off, static_cast<uint32_t>(len), m->lkey});
    refs->mrs.push_back(mr);
    refs->mrJs.push_back(mrv);
  }
  return true;
}

bool IsAtomic(enum ibv_wr_opcode op) { return op == IBV_WR_ATOMIC_CMP_AND_SWP || op == IBV_WR_ATOMIC_FETCH_AND_ADD; }

// [{ wrId, opcode, sge, signaled, remoteAddr, rkey, imm, compareAdd, swap, ah, remoteQpn, remoteQkey }]
bool ReadSendWrs(napi_env env, napi_value arr, enum ibv_qp_type type, SendBatch* b) {
  return ReadBatch(env, arr, b, [&](Keys* k, napi_value o, struct ibv_send_wr& w) {
    uint64_t imm, raddr, rkey;
    bool hasImm = false;
    if (!ReadOpcode(env, k->Read(o, Key::opcode), &w.opcode) ||
        !ReadUint(env, k->Read(o, Key::imm), "imm", UINT32_MAX, &imm, &hasImm) ||
        !ReadUint(env, k->Read(o, Key::remoteAddr), "remoteAddr", UINT64_MAX, &raddr) ||
        !ReadUint(env, k->Read(o, Key::rkey), "rkey", UINT32_MAX, &rkey))
      return false;
    napi_value sig = k->Read(o, Key::signaled);
    bool signaled = true;
    if (!IsUndefined(env, sig)) {
      napi_value b2;
      napi_coerce_to_bool(env, sig, &b2);
      napi_get_value_bool(env, b2, &signaled);
    }
    w.send_flags = signaled ? IBV_SEND_SIGNALED : 0;
    if (hasImm) w.imm_data = htonl(static_cast<uint32_t>(imm));
    if (IsAtomic(w.opcode)) {
      uint64_t ca, sw;
      if (!ReadUint(env, k->Read(o, Key::compareAdd), "compareAdd", UINT64_MAX, &ca) ||
          !ReadUint(env, k->Read(o, Key::swap), "swap", UINT64_MAX, &sw))
        return false;
      w.wr.atomic = {raddr, ca, sw, static_cast<uint32_t>(rkey)};
    } else if (type == IBV_QPT_UD) {
      // UD: { ah, remoteQpn, remoteQkey } name the destination of a datagram.
      uint64_t rq, qk;
      bool hasRq = false;
      napi_value ahv = k->Read(o, Key::ah);
      if (!ReadUint(env, k->Read(o, Key::remoteQpn), "remoteQpn", 0xffffff, &rq, &hasRq) ||
          !ReadUint(env, k->Read(o, Key::remoteQkey), "remoteQkey", UINT32_MAX, &qk))
        return false;
      if (!hasRq) {
        ThrowType(Napi::Env(env), "remoteQpn must be a number or bigint");
        return false;
      }
      RdmaAh* ah = ahv ? NodeArg<RdmaAh>(env, k, ahv) : nullptr;
      if (!ah || ah->closed()) {
        if (!ah)
          ThrowType(Napi::Env(env), "ah must be a AddressHandle");
        else
          ThrowState(Napi::Env(env), "ERR_CLOSED", "ah (AddressHandle) is closed");
        return false;
      }
      w.wr.ud.ah = ah->ah();
      w.wr.ud.remote_qpn = static_cast<uint32_t>(rq);
      w.wr.ud.remote_qkey = static_cast<uint32_t>(qk);
      b->refs.ahs.push_back(ah);
      b->refs.ahJs.push_back(ahv);
    } else {
      w.wr.rdma.remote_addr = raddr;
      w.wr.rdma.rkey = static_cast<uint32_t>(rkey);
    }
    return true;
  });
}

// Receive work requests from [{ wrId, sge }] (QP and SRQ alike).
bool ReadRecvWrs(napi_env env, napi_value arr, RecvBatch* b) {
  return ReadBatch(env, arr, b, [](Keys*, napi_value, struct ibv_recv_wr&) { return true; });
}

void ThrowPostError(Napi::Env env, const char* call, int r, ptrdiff_t failedIndex) {
  Napi::Error e = MakeSys(env, call, r, "queue pair state or work request not valid");
  e.Set("failedIndex", Napi::Number::New(env, static_cast<double>(failedIndex)));
  e.ThrowAsJavaScriptException();
}

}  // namespace sos
