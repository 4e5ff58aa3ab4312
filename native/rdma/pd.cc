#include "rdma/pd.h"

#include "rdma/context.h"

namespace sos {

const napi_type_tag RdmaPd::kTag = {0x7d1a2b3c4d5e6f71ULL, 0x0a1b2c3d4e5f6072ULL};

Napi::Function RdmaPd::Init(Napi::Env env) { return Define(env, "RdmaPd", {}); }

RdmaPd::RdmaPd(const Napi::CallbackInfo& info) : VerbsWrap(info, 6) {
  Napi::Env env = info.Env();
  RdmaContext* c = LiveNode<RdmaContext>(env, info[0], "context");
  if (!c) {
    Dead();
    return;
  }
  v_ = c->verbs();
  pd_ = v_->alloc_pd(c->ctx());
  if (!pd_) {
    ThrowSys(env, "ibv_alloc_pd", errno ? errno : ENOMEM);
    Dead();
    return;
  }
  ctx_ = c->ctx();
  Hold(info[0], c);
  Track(env, this);
}

int RdmaPd::Destroy() { return Release(pd_, v_->dealloc_pd); }

const napi_type_tag RdmaMr::kTag = {0x7d1a2b3c4d5e6f72ULL, 0x0a1b2c3d4e5f6073ULL};

Napi::Function RdmaMr::Init(Napi::Env env) { return Define(env, "RdmaMr", {InstanceMethod("info", &RdmaMr::Info)}); }

RdmaMr::RdmaMr(const Napi::CallbackInfo& info) : VerbsWrap(info, 4) {
  Napi::Env env = info.Env();
  RdmaPd* pd = LiveNode<RdmaPd>(env, info[0], "pd");
  if (!pd) {
    Dead();
    return;
  }
  uint64_t off, len, access;
  if (!ToU64(env, info[2], "offset", &off) || !ToU64(env, info[3], "length", &len) ||
      !ToU64(env, info[4], "access", &access)) {
    Dead();
    return;
  }
  uint8_t* base = nullptr;
  uint64_t size = 0;
  if (RegionWrap* r = RegionWrap::Unwrap(info[1])) {
    if (!r->mapping()) {
      ThrowState(env, "ERR_CLOSED", "region is closed");
      Dead();
      return;
    }
    Lock lock(RegistryMutex());
    Mapping* m = r->mapping().get();
    if (m->busy || !m->holes.Empty()) {
      ThrowState(env, "ERR_BUSY", "region is being moved or has unmapped pages");
      Dead();
      return;
    }
    pin_ = std::make_unique<Pin>(r->mapping());
    base = m->base;
    size = m->size;
  } else if (info[1].IsTypedArray() || info[1].IsArrayBuffer()) {
    // JavaScript can detach (transfer) this buffer and free its memory while the device may still
    // write it: no remote access (a peer could write any time), and every post checks it is attached.
    if (access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC)) {
      ThrowType(env,
                "remote access (remote-write, remote-read, remote-atomic) needs memory the addon owns (a Region): "
                "JavaScript can detach an ArrayBuffer and free its memory while a peer still writes it");
      Dead();
      return;
    }
    Napi::ArrayBuffer ab;
    if (info[1].IsTypedArray()) {
      auto ta = info[1].As<Napi::TypedArray>();
      ab = ta.ArrayBuffer();
      base = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
      size = ta.ByteLength();
    } else {
      ab = info[1].As<Napi::ArrayBuffer>();
      base = static_cast<uint8_t*>(ab.Data());
      size = ab.ByteLength();
    }
    if (ab.IsDetached()) {
      ThrowState(env, "ERR_MR_DETACHED", "the ArrayBuffer is detached (transferred): there is no memory to register");
      Dead();
      return;
    }
    buffer_ = Napi::Persistent(ab);
  } else if (info[1].IsObject() && !info[1].As<Napi::Object>().Get("address").IsUndefined()) {
    // A raw native range { address, length } (memory of another library):
    // the kernel checks that it is mapped when it pins it.
    Napi::Object raw = info[1].As<Napi::Object>();
    uint64_t a;
    if (!ToU64(env, raw.Get("address"), "address", &a) || !ToU64(env, raw.Get("length"), "length", &size)) {
      Dead();
      return;
    }
    base = reinterpret_cast<uint8_t*>(a);
  } else {
    ThrowType(env, "memory must be a Region, an ArrayBuffer, a typed array or { address, length }");
    Dead();
    return;
  }
  if (len == 0 || off > size || len > size - off) {
    ThrowRange(env, "range is outside the memory");
    Dead();
    return;
  }
  v_ = pd->verbs();
  mr_ = v_->reg_mr(pd->pd(), base + off, len, static_cast<int>(access));
  if (!mr_) {
    ThrowSys(env, "ibv_reg_mr", errno ? errno : EINVAL);
    Dead();
    return;
  }
  Hold(info[0], pd);
  Track(env, this);
}

int RdmaMr::Destroy() {
  int r = mr_ ? v_->dereg_mr(mr_) : 0;
  mr_ = nullptr;
  pin_.reset();
  buffer_.Reset();
  return r;
}

bool RdmaMr::Detached(napi_env env) const {
  if (buffer_.IsEmpty()) return false;
  bool detached = false;
  napi_value ab = buffer_.Value();
  return ab && napi_is_detached_arraybuffer(env, ab, &detached) == napi_ok && detached;
}

Napi::Value RdmaMr::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("addr", FromU64(env, reinterpret_cast<uint64_t>(mr_->addr)));
  o.Set("length", FromU64(env, mr_->length));
  o.Set("lkey", mr_->lkey);
  o.Set("rkey", mr_->rkey);
  return o;
}

}  // namespace sos
