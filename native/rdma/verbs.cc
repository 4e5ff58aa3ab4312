#include "rdma/verbs.h"

#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>

#include <chrono>
#include <cmath>

#include <algorithm>
#include <cstring>
#include <string>

#include "core/fd_watch.h"
#include "rdma/cm.h"
#include "rdma/keys.h"
#include "core/offthread.h"

namespace sos {

void VerbsNode::CloseTree() {
  if (closed_) return;
  closed_ = true;
  // Children first, newest first; each removes itself from our list.
  while (!children_.empty()) {
    VerbsNode* c = children_.back();
    c->CloseTree();
    if (!children_.empty() && children_.back() == c) children_.pop_back();
  }
  destroyErr_ = Destroy();
  parents_.clear();  // after the handle is gone: the parents may be collected now
  for (VerbsNode* o : owners_) {
    auto& v = o->children_;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
  }
  owners_.clear();
  Untrack(Napi::Env(env_), this);
}

namespace {

const Verbs* RequireVerbs(Napi::Env env) {
  std::string why;
  const Verbs* v = LoadVerbs(&why);
  if (!v) ThrowState(env, "ERR_NO_RDMA", why);
  return v;
}

// The node behind a JS value when it is a live T.
template <typename T>
T* LiveNode(Napi::Env env, const Napi::Value& v, const char* what) {
  T* n = UnwrapTagged<T>(v, &T::kTag);
  if (!n) {
    ThrowType(env, std::string(what) + " must be a " + T::kName);
    return nullptr;
  }
  if (n->closed()) {
    ThrowState(env, "ERR_CLOSED", std::string(what) + " (" + T::kName + ") is closed");
    return nullptr;
  }
  return n;
}

std::string GidString(const union ibv_gid& g) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, g.raw, buf, sizeof(buf));
  return buf;
}

bool ParseGid(Napi::Env env, const Napi::Value& v, union ibv_gid* g) {
  if (!v.IsString() || inet_pton(AF_INET6, v.As<Napi::String>().Utf8Value().c_str(), g->raw) != 1) {
    ThrowType(env, "gid must be an IPv6-form string like ::ffff:10.0.2.15");
    return false;
  }
  return true;
}

uint32_t U32(Napi::Env env, Napi::Object o, const char* k, uint32_t dflt, bool* ok) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) return dflt;
  uint64_t x;
  if (!ToU64(env, v, k, &x) || x > UINT32_MAX) {
    if (!env.IsExceptionPending()) ThrowRange(env, std::string(k) + " must fit in 32 bits");
    *ok = false;
    return 0;
  }
  return static_cast<uint32_t>(x);
}

}  // namespace

// ---------------- device list ----------------
static Napi::Value Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  const Verbs* v = LoadVerbs(nullptr);
  if (!v) return out;  // no rdma-core: no devices
  int n = 0;
  struct ibv_device** list = v->get_device_list(&n);
  if (!list) return out;  // ENOSYS on a kernel without RDMA: no devices
  for (int i = 0; i < n; i++) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", v->get_device_name(list[i]));
    char guid[32];
    snprintf(guid, sizeof(guid), "%016llx", static_cast<unsigned long long>(be64toh(v->get_device_guid(list[i]))));
    d.Set("guid", guid);
    d.Set("transport", list[i]->transport_type == IBV_TRANSPORT_IB ? "ib" : list[i]->transport_type == IBV_TRANSPORT_IWARP ? "iwarp" : "other");
    out.Set(i, d);
  }
  v->free_device_list(list);
  return out;
}

static Napi::Value Status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string why;
  Napi::Object o = Napi::Object::New(env);
  o.Set("library", LoadVerbs(&why) != nullptr);
  if (!why.empty()) o.Set("reason", why);
  return o;
}

// ---------------- context ----------------
class RdmaContext : public VerbsWrap<RdmaContext> {
 public:
  static constexpr const char* kName = "Context";
  static constexpr const char* kWhat = "RDMA context";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaContext",
                       {InstanceMethod("query", &RdmaContext::Query), InstanceMethod("queryPort", &RdmaContext::QueryPort),
                        InstanceMethod("queryGid", &RdmaContext::QueryGid),
                        InstanceMethod("startEvents", &RdmaContext::StartEvents)});
  }
  explicit RdmaContext(const Napi::CallbackInfo& info) : VerbsWrap(info, 7) {
    Napi::Env env = info.Env();
    v_ = RequireVerbs(env);
    if (!v_) { Dead(); return; }
    if (!info[0].IsString()) {
      ThrowType(env, "device name must be a string");
      { Dead(); return; }
    }
    std::string name = info[0].As<Napi::String>().Utf8Value();
    int n = 0;
    struct ibv_device** list = v_->get_device_list(&n);
    if (!list) {
      ThrowSys(env, "ibv_get_device_list", errno ? errno : ENODEV, "no RDMA devices on this kernel");
      { Dead(); return; }
    }
    struct ibv_device* dev = nullptr;
    for (int i = 0; i < n; i++)
      if (name == v_->get_device_name(list[i])) dev = list[i];
    if (dev) ctx_ = v_->open_device(dev);
    int err = errno;
    v_->free_device_list(list);
    if (!dev) {
      ThrowSys(env, "ibv_open_device", ENODEV, "no RDMA device named " + name);
      { Dead(); return; }
    }
    if (!ctx_) {
      ThrowSys(env, "ibv_open_device", err ? err : EIO);
      { Dead(); return; }
    }
    Track(env, this);
  }
  ~RdmaContext() override { CloseTree(); }
  struct ibv_context* ctx() const { return ctx_; }
  const Verbs* verbs() const { return v_; }

 private:
  int Destroy() override {
    if (watch_) watch_->Stop();
    onEvent_.Reset();
    return Release(ctx_, v_->close_device);
  }
  // startEvents(cb({ type, port?, qpNum? })): async events (port up/down, QP
  // and CQ errors) read from the context's async fd on the libuv loop.
  Napi::Value StartEvents(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!info[0].IsFunction()) {
      ThrowType(env, "callback must be a function");
      return env.Undefined();
    }
    onEvent_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (watch_) return env.Undefined();
    int fl = fcntl(ctx_->async_fd, F_GETFL);
    if (fl < 0 || fcntl(ctx_->async_fd, F_SETFL, fl | O_NONBLOCK) != 0) {
      ThrowSys(env, "fcntl(F_SETFL)", errno);
      return env.Undefined();
    }
    if (FdWatch::Start(env, ctx_->async_fd, [this] { OnAsyncEvents(); }, &watch_)) watch_->SetRef(false);
    return env.Undefined();
  }
  void OnAsyncEvents() {
    struct ibv_async_event ev;
    while (ctx_ && v_->get_async_event(ctx_, &ev) == 0) {
      std::string type = v_->event_type_str(ev.event_type);
      int port = -1;
      int64_t qpn = -1;
      if (ev.event_type == IBV_EVENT_PORT_ACTIVE || ev.event_type == IBV_EVENT_PORT_ERR ||
          ev.event_type == IBV_EVENT_LID_CHANGE || ev.event_type == IBV_EVENT_GID_CHANGE)
        port = ev.element.port_num;
      if (ev.event_type == IBV_EVENT_QP_FATAL || ev.event_type == IBV_EVENT_QP_REQ_ERR ||
          ev.event_type == IBV_EVENT_QP_ACCESS_ERR || ev.event_type == IBV_EVENT_COMM_EST ||
          ev.event_type == IBV_EVENT_SQ_DRAINED || ev.event_type == IBV_EVENT_QP_LAST_WQE_REACHED)
        qpn = ev.element.qp ? ev.element.qp->qp_num : -1;
      v_->ack_async_event(&ev);  // before calling out: destroying the object waits for acks
      if (onEvent_.IsEmpty() || !CanRunJs(env_)) continue;
      Napi::Env env(env_);
      Napi::HandleScope scope(env);
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", type);
      if (port >= 0) o.Set("port", port);
      if (qpn >= 0) o.Set("qpNum", Napi::Number::New(env, static_cast<double>(qpn)));
      onEvent_.MakeCallback(env.Global(), {o});
    }
  }
  FdWatch* watch_ = nullptr;
  Napi::FunctionReference onEvent_;
  Napi::Value Query(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    struct ibv_device_attr a = {};
    int r = v_->query_device(ctx_, &a);
    if (r) {
      ThrowSys(env, "ibv_query_device", r);
      return env.Undefined();
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("fwVer", a.fw_ver);
    o.Set("vendorId", a.vendor_id);
    o.Set("vendorPartId", a.vendor_part_id);
    o.Set("maxMrSize", FromU64(env, a.max_mr_size));
    o.Set("maxQp", a.max_qp);
    o.Set("maxQpWr", a.max_qp_wr);
    o.Set("maxSge", a.max_sge);
    o.Set("maxCq", a.max_cq);
    o.Set("maxCqe", a.max_cqe);
    o.Set("maxMr", a.max_mr);
    o.Set("maxPd", a.max_pd);
    o.Set("maxQpRdAtom", a.max_qp_rd_atom);
    o.Set("atomicCap", a.atomic_cap == IBV_ATOMIC_NONE ? "none" : a.atomic_cap == IBV_ATOMIC_HCA ? "hca" : "glob");
    o.Set("physPortCnt", a.phys_port_cnt);
    return o;
  }
  Napi::Value QueryPort(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    uint64_t port;
    if (!ToU64(env, info[0], "port", &port)) return env.Undefined();
    if (port < 1 || port > 255) {
      ThrowRange(env, "port must be between 1 and 255");
      return env.Undefined();
    }
    struct ibv_port_attr a = {};
    int r = v_->query_port(ctx_, static_cast<uint8_t>(port), &a);
    if (r) {
      ThrowSys(env, "ibv_query_port", r);
      return env.Undefined();
    }
    static const char* states[] = {"NOP", "DOWN", "INIT", "ARMED", "ACTIVE", "ACTIVE_DEFER"};
    Napi::Object o = Napi::Object::New(env);
    o.Set("state", a.state < 6 ? states[a.state] : "UNKNOWN");
    o.Set("maxMtu", 128 << a.max_mtu);
    o.Set("activeMtu", 128 << a.active_mtu);
    o.Set("gidTblLen", a.gid_tbl_len);
    o.Set("lid", a.lid);
    o.Set("linkLayer", a.link_layer == IBV_LINK_LAYER_ETHERNET ? "ethernet" : "infiniband");
    return o;
  }
  Napi::Value QueryGid(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    uint64_t port, index;
    if (!ToU64(env, info[0], "port", &port) || !ToU64(env, info[1], "index", &index)) return env.Undefined();
    if (port < 1 || port > 255 || index > INT32_MAX) {
      ThrowRange(env, "port or gid index out of range");
      return env.Undefined();
    }
    union ibv_gid g;
    int r = v_->query_gid(ctx_, static_cast<uint8_t>(port), static_cast<int>(index), &g);
    if (r) {
      ThrowSys(env, "ibv_query_gid", r ? errno ? errno : EINVAL : EINVAL);
      return env.Undefined();
    }
    return Napi::String::New(env, GidString(g));
  }

  const Verbs* v_ = nullptr;
  struct ibv_context* ctx_ = nullptr;
};
const napi_type_tag RdmaContext::kTag = {0x7d1a2b3c4d5e6f70ULL, 0x0a1b2c3d4e5f6071ULL};

// ---------------- protection domain ----------------
class RdmaPd : public VerbsWrap<RdmaPd> {
 public:
  static constexpr const char* kName = "ProtectionDomain";
  static constexpr const char* kWhat = "protection domain";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaPd", {});
  }
  explicit RdmaPd(const Napi::CallbackInfo& info) : VerbsWrap(info, 6) {
    Napi::Env env = info.Env();
    RdmaContext* c = LiveNode<RdmaContext>(env, info[0], "context");
    if (!c) { Dead(); return; }
    v_ = c->verbs();
    pd_ = v_->alloc_pd(c->ctx());
    if (!pd_) {
      ThrowSys(env, "ibv_alloc_pd", errno ? errno : ENOMEM);
      { Dead(); return; }
    }
    ctx_ = c->ctx();
    Hold(info[0], c);
    Track(env, this);
  }
  ~RdmaPd() override { CloseTree(); }
  struct ibv_pd* pd() const { return pd_; }
  const Verbs* verbs() const { return v_; }

 private:
  int Destroy() override {
    return Release(pd_, v_->dealloc_pd);
  }
  const Verbs* v_ = nullptr;
  struct ibv_pd* pd_ = nullptr;
  struct ibv_context* ctx_ = nullptr;
};
const napi_type_tag RdmaPd::kTag = {0x7d1a2b3c4d5e6f71ULL, 0x0a1b2c3d4e5f6072ULL};

// ---------------- memory region ----------------
// new RdmaMr(pd, target, offset, length, accessBits): target is a Region
// (pinned while registered) or JS memory (kept referenced).
class RdmaMr : public VerbsWrap<RdmaMr> {
 public:
  static constexpr const char* kName = "MemoryRegion";
  static constexpr const char* kWhat = "memory region";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaMr", {InstanceMethod("info", &RdmaMr::Info)});
  }
  explicit RdmaMr(const Napi::CallbackInfo& info) : VerbsWrap(info, 4) {
    Napi::Env env = info.Env();
    RdmaPd* pd = LiveNode<RdmaPd>(env, info[0], "pd");
    if (!pd) { Dead(); return; }
    uint64_t off, len, access;
    if (!ToU64(env, info[2], "offset", &off) || !ToU64(env, info[3], "length", &len) ||
        !ToU64(env, info[4], "access", &access))
      { Dead(); return; }
    uint8_t* base = nullptr;
    uint64_t size = 0;
    if (RegionWrap* r = RegionWrap::Unwrap(info[1])) {
      if (!r->mapping()) {
        ThrowState(env, "ERR_CLOSED", "region is closed");
        { Dead(); return; }
      }
      Lock lock(RegistryMutex());
      Mapping* m = r->mapping().get();
      if (m->busy || !m->holes.Empty()) {
        ThrowState(env, "ERR_BUSY", "region is being moved or has unmapped pages");
        { Dead(); return; }
      }
      pin_ = std::make_unique<Pin>(r->mapping());
      base = m->base;
      size = m->size;
    } else if (info[1].IsTypedArray()) {
      auto ta = info[1].As<Napi::TypedArray>();
      base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
      size = ta.ByteLength();
      keep_ = Napi::Persistent(info[1].As<Napi::Object>());
    } else if (info[1].IsArrayBuffer()) {
      auto ab = info[1].As<Napi::ArrayBuffer>();
      base = static_cast<uint8_t*>(ab.Data());
      size = ab.ByteLength();
      keep_ = Napi::Persistent(info[1].As<Napi::Object>());
    } else if (info[1].IsObject() && !info[1].As<Napi::Object>().Get("address").IsUndefined()) {
      // A raw native range { address, length } (memory of another library):
      // the kernel checks that it is mapped when it pins it.
      Napi::Object raw = info[1].As<Napi::Object>();
      uint64_t a;
      if (!ToU64(env, raw.Get("address"), "address", &a) || !ToU64(env, raw.Get("length"), "length", &size)) { Dead(); return; }
      base = reinterpret_cast<uint8_t*>(a);
    } else {
      ThrowType(env, "memory must be a Region, an ArrayBuffer, a typed array or { address, length }");
      { Dead(); return; }
    }
    if (len == 0 || off > size || len > size - off) {
      ThrowRange(env, "range is outside the memory");
      { Dead(); return; }
    }
    v_ = pd->verbs();
    mr_ = v_->reg_mr(pd->pd(), base + off, len, static_cast<int>(access));
    if (!mr_) {
      ThrowSys(env, "ibv_reg_mr", errno ? errno : EINVAL);
      { Dead(); return; }
    }
    Hold(info[0], pd);
    Track(env, this);
  }
  ~RdmaMr() override { CloseTree(); }
  const char* DestroyCall() const override { return "ibv_dereg_mr"; }
  struct ibv_mr* mr() const { return mr_; }

 private:
  int Destroy() override {
    int r = mr_ ? v_->dereg_mr(mr_) : 0;
    mr_ = nullptr;
    pin_.reset();
    keep_.Reset();
    return r;
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    Napi::Object o = Napi::Object::New(env);
    o.Set("addr", FromU64(env, reinterpret_cast<uint64_t>(mr_->addr)));
    o.Set("length", FromU64(env, mr_->length));
    o.Set("lkey", mr_->lkey);
    o.Set("rkey", mr_->rkey);
    return o;
  }
  const Verbs* v_ = nullptr;
  struct ibv_mr* mr_ = nullptr;
  std::unique_ptr<Pin> pin_;
  Napi::ObjectReference keep_;
};
const napi_type_tag RdmaMr::kTag = {0x7d1a2b3c4d5e6f72ULL, 0x0a1b2c3d4e5f6073ULL};

// ---------------- completion channel ----------------
// Completion events on the libuv loop: each event is acked at once (a CQ
// cannot be destroyed with unacked events) and reported with its CQ.
class RdmaChannel : public VerbsWrap<RdmaChannel> {
 public:
  static constexpr const char* kName = "CompletionChannel";
  static constexpr const char* kWhat = "completion channel";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaChannel", {InstanceMethod("start", &RdmaChannel::Start), InstanceMethod("ref", &RdmaChannel::Ref)});
  }
  explicit RdmaChannel(const Napi::CallbackInfo& info) : VerbsWrap(info, 5) {
    Napi::Env env = info.Env();
    RdmaContext* c = LiveNode<RdmaContext>(env, info[0], "context");
    if (!c) { Dead(); return; }
    v_ = c->verbs();
    ch_ = v_->create_comp_channel(c->ctx());
    if (!ch_) {
      ThrowSys(env, "ibv_create_comp_channel", errno ? errno : ENOMEM);
      { Dead(); return; }
    }
    int fl = fcntl(ch_->fd, F_GETFL);
    if (fl < 0 || fcntl(ch_->fd, F_SETFL, fl | O_NONBLOCK) != 0) {
      ThrowSys(env, "fcntl(F_SETFL)", errno);
      { Dead(); return; }
    }
    Hold(info[0], c);
    Track(env, this);
  }
  ~RdmaChannel() override { CloseTree(); }
  struct ibv_comp_channel* channel() const { return ch_; }

 private:
  int Destroy() override {
    if (watch_) watch_->Stop();
    onEvent_.Reset();
    return Release(ch_, v_->destroy_comp_channel);
  }
  // start(cb(cq)): cb gets the JS CompletionQueue object that has completions.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!info[0].IsFunction()) {
      ThrowType(env, "callback must be a function");
      return env.Undefined();
    }
    onEvent_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (!watch_) FdWatch::Start(env, ch_->fd, [this] { OnEvents(); }, &watch_);
    return env.Undefined();
  }
  // ref(bool): whether waiting for completions keeps the process alive.
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (watch_) watch_->SetRef(info[0].ToBoolean());
    return info.Env().Undefined();
  }
  void OnEvents();
  const Verbs* v_ = nullptr;
  struct ibv_comp_channel* ch_ = nullptr;
  FdWatch* watch_ = nullptr;
  Napi::FunctionReference onEvent_;
};
const napi_type_tag RdmaChannel::kTag = {0x7d1a2b3c4d5e6f76ULL, 0x0a1b2c3d4e5f6077ULL};

// ---------------- completion queue ----------------
// pollInto's layout: numbers per completion, in this order.
enum WcSlot { kWcWrId, kWcStatus, kWcOpcode, kWcByteLen, kWcImm, kWcQpNum, kWcSrcQp, kWcFlags, kWcSlots };
class RdmaCq : public VerbsWrap<RdmaCq> {
 public:
  static constexpr const char* kName = "CompletionQueue";
  static constexpr const char* kWhat = "completion queue";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaCq", {InstanceMethod("poll", &RdmaCq::Poll), InstanceMethod("pollSpin", &RdmaCq::PollSpin),
                                  InstanceMethod("pollInto", &RdmaCq::PollInto),
                                      InstanceMethod("requestNotify", &RdmaCq::RequestNotify)});
  }
  explicit RdmaCq(const Napi::CallbackInfo& info) : VerbsWrap(info, 4) {
    Napi::Env env = info.Env();
    RdmaContext* c = LiveNode<RdmaContext>(env, info[0], "context");
    if (!c) { Dead(); return; }
    uint64_t cqe;
    if (!ToU64(env, info[1], "cqe", &cqe)) { Dead(); return; }
    if (cqe < 1 || cqe > INT32_MAX) {
      ThrowRange(env, "cqe must be positive");
      { Dead(); return; }
    }
    RdmaChannel* ch = nullptr;
    if (!info[2].IsUndefined() && !info[2].IsNull()) {
      ch = LiveNode<RdmaChannel>(env, info[2], "channel");
      if (!ch) { Dead(); return; }
    }
    v_ = c->verbs();
    cq_ = v_->create_cq(c->ctx(), static_cast<int>(cqe), this, ch ? ch->channel() : nullptr, 0);
    if (!cq_) {
      ThrowSys(env, "ibv_create_cq", errno ? errno : EINVAL);
      { Dead(); return; }
    }
    Hold(info[0], c);
    if (ch) {
      Hold(info[2], ch);
    }
    Track(env, this);
  }
  ~RdmaCq() override { CloseTree(); }
  struct ibv_cq* cq() const { return cq_; }

 private:
  int Destroy() override {
    return Release(cq_, v_->destroy_cq);
  }
  // poll(max) -> completions (never blocks)
  Napi::Value Poll(const Napi::CallbackInfo& info) {
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
  // pollSpin(max, spinMicros): busy-poll in C++ until a completion arrives or
  // the (bounded) time is up — for latency-critical paths; blocks this thread.
  Napi::Value PollSpin(const Napi::CallbackInfo& info) {
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
    do {
      n = ibv_poll_cq(cq_, static_cast<int>(max), wc);
    } while (n == 0 && std::chrono::steady_clock::now() < until);
    if (n < 0) {
      ThrowSys(env, "ibv_poll_cq", EIO);
      return env.Undefined();
    }
    return ToJs(env, wc, n);
  }
  // requestNotify(solicitedOnly): arm the CQ; the next completion raises an event on its channel.
  Napi::Value RequestNotify(const Napi::CallbackInfo& info) {
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
  // pollInto(out: Float64Array | BigUint64Array, max?) -> count: completions
  // written as kWcSlots numbers each (the layout is WcSlot), no objects made.
  // A Float64Array holds wr_ids exactly up to 2^53.
  Napi::Value PollInto(const Napi::CallbackInfo& info) {
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
      uint64_t f[kWcSlots] = {wc[i].wr_id, static_cast<uint64_t>(wc[i].status), static_cast<uint64_t>(wc[i].opcode), wc[i].byte_len,
                              wc[i].wc_flags & IBV_WC_WITH_IMM ? ntohl(wc[i].imm_data) : 0u, wc[i].qp_num, wc[i].src_qp,
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
  // Completions as objects; an empty poll returns one shared frozen [].
  Napi::Value ToJs(Napi::Env env, struct ibv_wc* wc, int n) {
    static const char* ops[] = {"SEND", "RDMA_WRITE", "RDMA_READ", "COMP_SWAP", "FETCH_ADD", "BIND_MW", "LOCAL_INV", "TSO"};
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
      const char* op = wc[i].opcode & IBV_WC_RECV ? (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM ? "RECV_RDMA_WITH_IMM" : "RECV")
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

 public:

 private:
  const Verbs* v_ = nullptr;
  struct ibv_cq* cq_ = nullptr;
};
const napi_type_tag RdmaCq::kTag = {0x7d1a2b3c4d5e6f73ULL, 0x0a1b2c3d4e5f6074ULL};

void RdmaChannel::OnEvents() {
  struct ibv_cq* cq;
  void* cqctx;
  while (ch_ && v_->get_cq_event(ch_, &cq, &cqctx) == 0) {
    v_->ack_cq_events(cq, 1);
    auto* node = static_cast<RdmaCq*>(cqctx);
    if (onEvent_.IsEmpty() || !node || node->closed() || !CanRunJs(env_)) continue;
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    onEvent_.MakeCallback(env.Global(), {node->JsObject()});
  }
}

// ---------------- address handle (UD destinations) ----------------
// new RdmaAh(pd, { dgid, sgidIndex, hopLimit, port })
class RdmaAh : public VerbsWrap<RdmaAh> {
 public:
  static constexpr const char* kName = "AddressHandle";
  static constexpr const char* kWhat = "address handle";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaAh", {});
  }
  explicit RdmaAh(const Napi::CallbackInfo& info) : VerbsWrap(info, 3) {
    Napi::Env env = info.Env();
    RdmaPd* pd = LiveNode<RdmaPd>(env, info[0], "pd");
    if (!pd) { Dead(); return; }
    Napi::Object o = info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
    struct ibv_ah_attr a = {};
    bool ok = true;
    if (!ParseGid(env, o.Get("dgid"), &a.grh.dgid)) { Dead(); return; }
    a.is_global = 1;
    a.grh.sgid_index = static_cast<uint8_t>(U32(env, o, "sgidIndex", 0, &ok));
    a.grh.hop_limit = static_cast<uint8_t>(U32(env, o, "hopLimit", 64, &ok));
    a.port_num = static_cast<uint8_t>(U32(env, o, "port", 1, &ok));
    if (!ok) { Dead(); return; }
    v_ = pd->verbs();
    ah_ = v_->create_ah(pd->pd(), &a);
    if (!ah_) {
      ThrowSys(env, "ibv_create_ah", errno ? errno : EINVAL);
      { Dead(); return; }
    }
    Hold(info[0], pd);
    Track(env, this);
  }
  ~RdmaAh() override { CloseTree(); }
  struct ibv_ah* ah() const { return ah_; }

 private:
  int Destroy() override {
    return Release(ah_, v_->destroy_ah);
  }
  const Verbs* v_ = nullptr;
  struct ibv_ah* ah_ = nullptr;
};
const napi_type_tag RdmaAh::kTag = {0x7d1a2b3c4d5e6f77ULL, 0x0a1b2c3d4e5f6078ULL};

// ---------------- shared receive queue ----------------
class RdmaSrq : public VerbsWrap<RdmaSrq> {
 public:
  static constexpr const char* kName = "SharedReceiveQueue";
  static constexpr const char* kWhat = "shared receive queue";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaSrq", {InstanceMethod("postRecv", &RdmaSrq::PostRecv)});
  }
  // new RdmaSrq(pd, { maxWr, maxSge })
  explicit RdmaSrq(const Napi::CallbackInfo& info) : VerbsWrap(info, 4) {
    Napi::Env env = info.Env();
    RdmaPd* pd = LiveNode<RdmaPd>(env, info[0], "pd");
    if (!pd) { Dead(); return; }
    Napi::Object o = info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
    bool ok = true;
    struct ibv_srq_init_attr a = {};
    a.attr.max_wr = U32(env, o, "maxWr", 64, &ok);
    a.attr.max_sge = U32(env, o, "maxSge", 1, &ok);
    if (!ok) { Dead(); return; }
    v_ = pd->verbs();
    srq_ = v_->create_srq(pd->pd(), &a);
    if (!srq_) {
      ThrowSys(env, "ibv_create_srq", errno ? errno : EINVAL);
      { Dead(); return; }
    }
    Hold(info[0], pd);
    Track(env, this);
  }
  ~RdmaSrq() override { CloseTree(); }
  struct ibv_srq* srq() const { return srq_; }

 private:
  int Destroy() override {
    return Release(srq_, v_->destroy_srq);
  }
  Napi::Value PostRecv(const Napi::CallbackInfo& info);
  const Verbs* v_ = nullptr;
  struct ibv_srq* srq_ = nullptr;
};
const napi_type_tag RdmaSrq::kTag = {0x7d1a2b3c4d5e6f78ULL, 0x0a1b2c3d4e5f6079ULL};

// ---------------- work requests ----------------
// Work requests are read in raw N-API with the env's cached keys, each field
// once. JS getters may run while a request is read (and close things): the
// MRs, AHs and the QP are checked again after the last read, before posting.
namespace {

// A verbs object given directly or as the typed layer's wrapper ({ raw }).
template <typename T>
T* NodeArg(napi_env env, Keys* k, napi_value v) {
  Napi::Value val(env, v);
  if (T* n = UnwrapTagged<T>(val, &T::kTag)) return n;
  if (!val.IsObject()) return nullptr;
  return UnwrapTagged<T>(Napi::Value(env, k->Read(v, Key::raw)), &T::kTag);
}

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

napi_value ObjectAt(napi_env env, napi_value arr, uint32_t i, const char* what) {
  napi_value v = nullptr;
  napi_valuetype t = napi_undefined;
  if (napi_get_element(env, arr, i, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok || t != napi_object) {
    if (!Napi::Env(env).IsExceptionPending()) ThrowType(Napi::Env(env), std::string(what) + " must be objects");
    return nullptr;
  }
  return v;
}

// What a batch of work requests refers to, checked again before posting.
struct Refs {
  std::vector<RdmaMr*> mrs;      // one per SGE
  std::vector<napi_value> mrJs;  // their JS objects (valid in this call)
  std::vector<RdmaAh*> ahs;
  std::vector<napi_value> ahJs;
  bool Live(napi_env env) const {
    for (RdmaMr* m : mrs)
      if (m->closed()) return Fail(env, "a memory region of these work requests was closed while they were read");
    for (RdmaAh* a : ahs)
      if (a->closed()) return Fail(env, "an address handle of these work requests was closed while they were read");
    return true;
  }
  static bool Fail(napi_env env, const char* msg) {
    ThrowState(Napi::Env(env), "ERR_CLOSED", msg);
    return false;
  }
};

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

bool ReadOpcode(napi_env env, napi_value v, enum ibv_wr_opcode* op) {
  static const struct {
    const char* name;
    enum ibv_wr_opcode op;
  } ops[] = {{"SEND", IBV_WR_SEND}, {"SEND_WITH_IMM", IBV_WR_SEND_WITH_IMM}, {"RDMA_WRITE", IBV_WR_RDMA_WRITE},
             {"RDMA_WRITE_WITH_IMM", IBV_WR_RDMA_WRITE_WITH_IMM}, {"RDMA_READ", IBV_WR_RDMA_READ},
             {"ATOMIC_CMP_AND_SWP", IBV_WR_ATOMIC_CMP_AND_SWP}, {"ATOMIC_FETCH_AND_ADD", IBV_WR_ATOMIC_FETCH_AND_ADD}};
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
  ThrowType(Napi::Env(env), "opcode must be SEND, SEND_WITH_IMM, RDMA_WRITE, RDMA_WRITE_WITH_IMM, RDMA_READ, "
                            "ATOMIC_CMP_AND_SWP or ATOMIC_FETCH_AND_ADD");
  return false;
}

bool IsAtomic(enum ibv_wr_opcode op) { return op == IBV_WR_ATOMIC_CMP_AND_SWP || op == IBV_WR_ATOMIC_FETCH_AND_ADD; }

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
        if (!ah) ThrowType(Napi::Env(env), "ah must be a AddressHandle");
        else ThrowState(Napi::Env(env), "ERR_CLOSED", "ah (AddressHandle) is closed");
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

}  // namespace

// ---------------- queue pair ----------------
class RdmaQp : public VerbsWrap<RdmaQp> {
 public:
  static constexpr const char* kName = "QueuePair";
  static constexpr const char* kWhat = "queue pair";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaQp",
                       {InstanceMethod("info", &RdmaQp::Info), InstanceMethod("modify", &RdmaQp::Modify),
                        InstanceMethod("postSend", &RdmaQp::PostSend), InstanceMethod("postRecv", &RdmaQp::PostRecv)});
  }
  // new RdmaQp(pd, sendCq, recvCq, { type: 'RC'|'UD', maxSendWr, maxRecvWr, maxSendSge, maxRecvSge, maxInlineData, sigAll })
  explicit RdmaQp(const Napi::CallbackInfo& info) : VerbsWrap(info, 3) {
    Napi::Env env = info.Env();
    RdmaPd* pd = LiveNode<RdmaPd>(env, info[0], "pd");
    RdmaCq* scq = pd ? LiveNode<RdmaCq>(env, info[1], "sendCq") : nullptr;
    RdmaCq* rcq = scq ? LiveNode<RdmaCq>(env, info[2], "recvCq") : nullptr;
    if (!rcq) { Dead(); return; }
    Napi::Object o = info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
    bool ok = true;
    struct ibv_qp_init_attr a = {};
    std::string type = o.Get("type").IsString() ? o.Get("type").As<Napi::String>().Utf8Value() : "RC";
    if (type != "RC" && type != "UD") {
      ThrowType(env, "type must be 'RC' or 'UD'");
      { Dead(); return; }
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
      if (!srq) { Dead(); return; }
      a.srq = srq->srq();
    }
    if (!ok) { Dead(); return; }
    v_ = pd->verbs();
    qp_ = v_->create_qp(pd->pd(), &a);
    if (!qp_) {
      ThrowSys(env, "ibv_create_qp", errno ? errno : EINVAL);
      { Dead(); return; }
    }
    type_ = a.qp_type;
    Hold(info[0], pd);
    Hold(info[1], scq);
    Hold(info[2], rcq != scq ? rcq : nullptr);
    if (srq) Hold(o.Get("srq"), srq);
    Track(env, this);
  }
  ~RdmaQp() override { CloseTree(); }

 private:
  int Destroy() override {
    return Release(qp_, v_->destroy_qp);
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
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
  // modify({ state, portNum, pkeyIndex, access, qkey, pathMtu, destQpNum, rqPsn, sqPsn,
  //          maxDestRdAtomic, maxRdAtomic, minRnrTimer, timeout, retryCnt, rnrRetry,
  //          dgid, sgidIndex, hopLimit, ahPort }): the attribute mask is the keys given
  //          (dgid and its companions form the address vector).
  Napi::Value Modify(const Napi::CallbackInfo& info) {
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
    if (has("portNum")) { a.port_num = static_cast<uint8_t>(U32(env, o, "portNum", 1, &ok)); mask |= IBV_QP_PORT; }
    if (has("pkeyIndex")) { a.pkey_index = static_cast<uint16_t>(U32(env, o, "pkeyIndex", 0, &ok)); mask |= IBV_QP_PKEY_INDEX; }
    if (has("access")) { a.qp_access_flags = U32(env, o, "access", 0, &ok); mask |= IBV_QP_ACCESS_FLAGS; }
    if (has("qkey")) { a.qkey = U32(env, o, "qkey", 0, &ok); mask |= IBV_QP_QKEY; }
    if (has("pathMtu")) {
      uint32_t mtu = U32(env, o, "pathMtu", 1024, &ok);
      int e = mtu == 256 ? IBV_MTU_256 : mtu == 512 ? IBV_MTU_512 : mtu == 1024 ? IBV_MTU_1024 : mtu == 2048 ? IBV_MTU_2048 : mtu == 4096 ? IBV_MTU_4096 : 0;
      if (!e && ok) {
        ThrowRange(env, "pathMtu must be 256, 512, 1024, 2048 or 4096");
        return env.Undefined();
      }
      a.path_mtu = static_cast<enum ibv_mtu>(e);
      mask |= IBV_QP_PATH_MTU;
    }
    if (has("destQpNum")) { a.dest_qp_num = U32(env, o, "destQpNum", 0, &ok); mask |= IBV_QP_DEST_QPN; }
    if (has("rqPsn")) { a.rq_psn = U32(env, o, "rqPsn", 0, &ok); mask |= IBV_QP_RQ_PSN; }
    if (has("sqPsn")) { a.sq_psn = U32(env, o, "sqPsn", 0, &ok); mask |= IBV_QP_SQ_PSN; }
    if (has("maxDestRdAtomic")) { a.max_dest_rd_atomic = static_cast<uint8_t>(U32(env, o, "maxDestRdAtomic", 1, &ok)); mask |= IBV_QP_MAX_DEST_RD_ATOMIC; }
    if (has("maxRdAtomic")) { a.max_rd_atomic = static_cast<uint8_t>(U32(env, o, "maxRdAtomic", 1, &ok)); mask |= IBV_QP_MAX_QP_RD_ATOMIC; }
    if (has("minRnrTimer")) { a.min_rnr_timer = static_cast<uint8_t>(U32(env, o, "minRnrTimer", 12, &ok)); mask |= IBV_QP_MIN_RNR_TIMER; }
    if (has("timeout")) { a.timeout = static_cast<uint8_t>(U32(env, o, "timeout", 14, &ok)); mask |= IBV_QP_TIMEOUT; }
    if (has("retryCnt")) { a.retry_cnt = static_cast<uint8_t>(U32(env, o, "retryCnt", 7, &ok)); mask |= IBV_QP_RETRY_CNT; }
    if (has("rnrRetry")) { a.rnr_retry = static_cast<uint8_t>(U32(env, o, "rnrRetry", 7, &ok)); mask |= IBV_QP_RNR_RETRY; }
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

  // postSend([{ wrId, opcode, sge, signaled, remoteAddr, rkey, imm, compareAdd, swap, ah, remoteQpn, remoteQkey }]): one ibv_post_send.
  Napi::Value PostSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    SendBatch b;
    if (!ReadSendWrs(env, info[0], type_, &b) || b.wrs.empty() || !Live(env)) return env.Undefined();
    struct ibv_send_wr* bad = nullptr;
    int r = ibv_post_send(qp_, b.wrs.data(), &bad);
    if (r) ThrowPostError(env, "ibv_post_send", r, bad ? bad - b.wrs.data() : 0);
    return env.Undefined();
  }

  // postRecv([{ wrId, sge }]): one ibv_post_recv.
  Napi::Value PostRecv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    RecvBatch b;
    if (!ReadRecvWrs(env, info[0], &b) || b.wrs.empty() || !Live(env)) return env.Undefined();
    struct ibv_recv_wr* bad = nullptr;
    int r = ibv_post_recv(qp_, b.wrs.data(), &bad);
    if (r) ThrowPostError(env, "ibv_post_recv", r, bad ? bad - b.wrs.data() : 0);
    return env.Undefined();
  }

 public:
  struct ibv_qp* qp() const { return qp_; }
  enum ibv_qp_type type() const { return type_; }

 private:
  const Verbs* v_ = nullptr;
  struct ibv_qp* qp_ = nullptr;
  enum ibv_qp_type type_ = IBV_QPT_RC;
};
const napi_type_tag RdmaQp::kTag = {0x7d1a2b3c4d5e6f74ULL, 0x0a1b2c3d4e5f6075ULL};

// ---------------- prepared send ----------------
// new RdmaPrepared(qp, wrs): work requests converted and checked once, then
// posted many times with post(ctl, count). ctl (a Float64Array, the layout
// from layout()) carries what may change between posts: per work request
// wrId, remoteAddr, rkey, imm, then offset and length of each SGE (offset
// within its MR). A post reads only those numbers, checks them in C++ (the
// SGEs against their MR) and calls ibv_post_send: no property reads, no
// objects. The prepared send is a child of its QP and of every MR and AH it
// names: they stay referenced while it lives, and closing any of them closes
// it first.
enum PrepSlot { kPrepWrId, kPrepRemoteAddr, kPrepRkey, kPrepImm, kPrepWrSlots };
class RdmaPrepared : public VerbsWrap<RdmaPrepared> {
 public:
  static constexpr const char* kName = "PreparedSend";
  static constexpr const char* kWhat = "prepared send (closed itself, or with its queue pair, a memory region or an address handle)";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaPrepared", {InstanceMethod("post", &RdmaPrepared::Post), InstanceMethod("layout", &RdmaPrepared::Layout),
                                        InstanceMethod("read", &RdmaPrepared::Read)});
  }
  explicit RdmaPrepared(const Napi::CallbackInfo& info) : VerbsWrap(info, 2) {
    Napi::Env env = info.Env();
    RdmaQp* qp = LiveNode<RdmaQp>(env, info[0], "qp");
    if (!qp || !ReadSendWrs(env, info[1], qp->type(), &b_) || !qp->Live(env)) { Dead(); return; }
    if (b_.wrs.empty()) {
      ThrowRange(env, "a prepared send needs at least one work request");
      { Dead(); return; }
    }
    for (const auto& w : b_.wrs) {
      uint64_t raddr = IsAtomic(w.opcode) ? w.wr.atomic.remote_addr : qp->type() == IBV_QPT_UD ? 0 : w.wr.rdma.remote_addr;
      if (w.wr_id > kMaxSafe || raddr > kMaxSafe) {
        ThrowRange(env, "prepared work requests take wrId and remoteAddr up to 2^53 (they travel as doubles)");
        { Dead(); return; }
      }
    }
    uint32_t at = 0;
    for (size_t i = 0; i < b_.wrs.size(); i++) {
      base_.push_back(at);
      at += kPrepWrSlots + 2 * static_cast<uint32_t>(b_.wrs[i].num_sge);
    }
    base_.push_back(at);
    for (RdmaMr* m : b_.refs.mrs) mrLen_.push_back(m->mr()->length), mrAddr_.push_back(reinterpret_cast<uint64_t>(m->mr()->addr));
    qp_ = qp->qp();
    Hold(info[0], qp);
    // Each parent once.
    std::vector<VerbsNode*> seen;
    auto once = [&](napi_value js, VerbsNode* n) {
      if (std::find(seen.begin(), seen.end(), n) != seen.end()) return;
      seen.push_back(n);
      Hold(Napi::Value(env, js), n);
    };
    for (size_t i = 0; i < b_.refs.mrs.size(); i++) once(b_.refs.mrJs[i], b_.refs.mrs[i]);
    for (size_t i = 0; i < b_.refs.ahs.size(); i++) once(b_.refs.ahJs[i], b_.refs.ahs[i]);
    b_.refs = Refs();  // napi_values live only in this call
    Track(env, this);
  }
  ~RdmaPrepared() override { CloseTree(); }

 private:
  static constexpr uint64_t kMaxSafe = 9007199254740991ULL;
  int Destroy() override {
    qp_ = nullptr;
    return 0;
  }
  // layout() -> [offset of WR 0, offset of WR 1, ..., total length of ctl]
  Napi::Value Layout(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    Napi::Array a = Napi::Array::New(env, base_.size());
    for (size_t i = 0; i < base_.size(); i++) a.Set(static_cast<uint32_t>(i), base_[i]);
    return a;
  }
  double* Ctl(napi_env env, napi_value v, bool required) {
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
  // read(ctl): the prepared values into ctl.
  Napi::Value Read(const Napi::CallbackInfo& info) {
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
  bool type_ud() const { return qp_ && qp_->qp_type == IBV_QPT_UD; }
  static bool Whole(double d, double max) { return d >= 0 && d <= max && d == std::floor(d); }
  // post(ctl?, count?): the first count (default all) work requests, with
  // ctl's values when given; nothing is posted when a value is out of range.
  Napi::Value Post(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    if (!Live(info.Env())) return info.Env().Undefined();
    double* c = Ctl(env, info[0], false);
    if (!c && Napi::Env(env).IsExceptionPending()) return info.Env().Undefined();
    uint64_t count = b_.wrs.size();
    bool has = false;
    if (!ReadUint(env, info[1], "count", b_.wrs.size(), &count, &has)) return info.Env().Undefined();
    if (!has) count = b_.wrs.size();
    if (count == 0) return info.Env().Undefined();
    if (c) {
      size_t sge = 0;
      for (size_t i = 0; i < count; i++) {
        auto& w = b_.wrs[i];
        const double* d = c + base_[i];
        const char* bad = nullptr;
        if (!Whole(d[kPrepWrId], kMaxSafe)) bad = "wrId";
        else if (!Whole(d[kPrepRemoteAddr], kMaxSafe)) bad = "remoteAddr";
        else if (!Whole(d[kPrepRkey], UINT32_MAX)) bad = "rkey";
        else if (!Whole(d[kPrepImm], UINT32_MAX)) bad = "imm";
        for (int j = 0; !bad && j < w.num_sge; j++) {
          double off = d[kPrepWrSlots + 2 * j], len = d[kPrepWrSlots + 2 * j + 1];
          uint64_t mlen = mrLen_[sge + j];
          if (!Whole(off, static_cast<double>(mlen)) || !Whole(len, std::min<double>(static_cast<double>(mlen) - off, UINT32_MAX)))
            bad = "an sge (outside its memory region)";
        }
        if (bad) {
          ThrowRange(info.Env(), "prepared work request " + std::to_string(i) + ": " + bad + " out of range");
          return info.Env().Undefined();
        }
        w.wr_id = static_cast<uint64_t>(d[kPrepWrId]);
        uint64_t raddr = static_cast<uint64_t>(d[kPrepRemoteAddr]);
        uint32_t rkey = static_cast<uint32_t>(d[kPrepRkey]);
        if (IsAtomic(w.opcode)) w.wr.atomic.remote_addr = raddr, w.wr.atomic.rkey = rkey;
        else if (!type_ud()) w.wr.rdma.remote_addr = raddr, w.wr.rdma.rkey = rkey;
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
  SendBatch b_;
  std::vector<uint32_t> base_;
  std::vector<uint64_t> mrLen_, mrAddr_;  // per SGE: its MR's length and start
  struct ibv_qp* qp_ = nullptr;
};
const napi_type_tag RdmaPrepared::kTag = {0x7d1a2b3c4d5e6f79ULL, 0x0a1b2c3d4e5f607aULL};

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

Napi::Object InitRdma(Napi::Env env, Napi::Object exports) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("devices", Napi::Function::New(env, Devices));
  r.Set("status", Napi::Function::New(env, Status));
  r.Set("RdmaContext", RdmaContext::Init(env));
  r.Set("RdmaPd", RdmaPd::Init(env));
  r.Set("RdmaMr", RdmaMr::Init(env));
  r.Set("RdmaCq", RdmaCq::Init(env));
  r.Set("RdmaChannel", RdmaChannel::Init(env));
  r.Set("RdmaAh", RdmaAh::Init(env));
  r.Set("RdmaSrq", RdmaSrq::Init(env));
  r.Set("RdmaQp", RdmaQp::Init(env));
  r.Set("RdmaPrepared", RdmaPrepared::Init(env));
  r.Set("wcStatusStr", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
            const Verbs* v = LoadVerbs(nullptr);
            uint64_t st = 0;
            if (!ToU64(info.Env(), info[0], "status", &st)) return info.Env().Undefined();
            return Napi::String::New(info.Env(), v && st <= 0xffff ? v->wc_status_str(static_cast<enum ibv_wc_status>(st)) : "unknown");
          }));
  r.Set("WC_SLOTS", static_cast<int>(kWcSlots));
  r.Set("WC_WITH_IMM", static_cast<int>(IBV_WC_WITH_IMM));
  r.Set("ACCESS_LOCAL_WRITE", static_cast<int>(IBV_ACCESS_LOCAL_WRITE));
  r.Set("ACCESS_REMOTE_WRITE", static_cast<int>(IBV_ACCESS_REMOTE_WRITE));
  r.Set("ACCESS_REMOTE_READ", static_cast<int>(IBV_ACCESS_REMOTE_READ));
  r.Set("ACCESS_REMOTE_ATOMIC", static_cast<int>(IBV_ACCESS_REMOTE_ATOMIC));
  InitRdmaCm(env, r);  // rdma_cm: native/rdma/cm.cc
  exports.Set("rdma", r);
  return exports;
}

}  // namespace sos
