#include "rdma.h"

#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>

#include <chrono>

#include <algorithm>
#include <cstring>
#include <string>

#include "fd_watch.h"
#include "rdma_cm.h"
#include "offthread.h"

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
class RdmaContext : public Napi::ObjectWrap<RdmaContext>, public VerbsNode {
 public:
  static constexpr const char* kName = "Context";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RdmaContext",
                       {InstanceMethod("query", &RdmaContext::Query), InstanceMethod("queryPort", &RdmaContext::QueryPort),
                        InstanceMethod("queryGid", &RdmaContext::QueryGid), InstanceMethod("close", &RdmaContext::Close),
                        InstanceMethod("startEvents", &RdmaContext::StartEvents),
                        InstanceMethod("isClosed", &RdmaContext::IsClosed)});
  }
  explicit RdmaContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaContext>(info), VerbsNode(info.Env()) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTag);
    rank_ = 7;
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
  void Dead() { ctx_ = nullptr; CloseTree(); }
  int Destroy() override {
    if (watch_) watch_->Stop();
    onEvent_.Reset();
    int r = ctx_ ? v_->close_device(ctx_) : 0;
    ctx_ = nullptr;
    return r;
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
  bool Live(Napi::Env env) {
    if (closed() || !ctx_) {
      ThrowState(env, "ERR_CLOSED", "RDMA context is closed");
      return false;
    }
    return true;
  }
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
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseTree();
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed()); }

  const Verbs* v_ = nullptr;
  struct ibv_context* ctx_ = nullptr;
};
const napi_type_tag RdmaContext::kTag = {0x7d1a2b3c4d5e6f70ULL, 0x0a1b2c3d4e5f6071ULL};

// ---------------- protection domain ----------------
class RdmaPd : public Napi::ObjectWrap<RdmaPd>, public VerbsNode {
 public:
  static constexpr const char* kName = "ProtectionDomain";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RdmaPd", {InstanceMethod("close", &RdmaPd::Close), InstanceMethod("isClosed", &RdmaPd::IsClosed)});
  }
  explicit RdmaPd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaPd>(info), VerbsNode(info.Env()) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTag);
    rank_ = 6;
    RdmaContext* c = LiveNode<RdmaContext>(env, info[0], "context");
    if (!c) { Dead(); return; }
    v_ = c->verbs();
    pd_ = v_->alloc_pd(c->ctx());
    if (!pd_) {
      ThrowSys(env, "ibv_alloc_pd", errno ? errno : ENOMEM);
      { Dead(); return; }
    }
    ctx_ = c->ctx();
    parents_.push_back(Napi::Persistent(info[0].As<Napi::Object>()));
    c->Adopt(this);
    Track(env, this);
  }
  ~RdmaPd() override { CloseTree(); }
  struct ibv_pd* pd() const { return pd_; }
  const Verbs* verbs() const { return v_; }

 private:
  void Dead() { pd_ = nullptr; CloseTree(); }
  int Destroy() override {
    int r = pd_ ? v_->dealloc_pd(pd_) : 0;
    pd_ = nullptr;
    ReleaseParents();
    return r;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseTree();
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed()); }
  const Verbs* v_ = nullptr;
  struct ibv_pd* pd_ = nullptr;
  struct ibv_context* ctx_ = nullptr;
};
const napi_type_tag RdmaPd::kTag = {0x7d1a2b3c4d5e6f71ULL, 0x0a1b2c3d4e5f6072ULL};

// ---------------- memory region ----------------
// new RdmaMr(pd, target, offset, length, accessBits): target is a Region
// (pinned while registered) or JS memory (kept referenced).
class RdmaMr : public Napi::ObjectWrap<RdmaMr>, public VerbsNode {
 public:
  static constexpr const char* kName = "MemoryRegion";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RdmaMr", {InstanceMethod("info", &RdmaMr::Info), InstanceMethod("close", &RdmaMr::Close),
                                      InstanceMethod("isClosed", &RdmaMr::IsClosed)});
  }
  explicit RdmaMr(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaMr>(info), VerbsNode(info.Env()) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTag);
    rank_ = 4;
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
    parents_.push_back(Napi::Persistent(info[0].As<Napi::Object>()));
    pd->Adopt(this);
    Track(env, this);
  }
  ~RdmaMr() override { CloseTree(); }
  struct ibv_mr* mr() const { return mr_; }

 private:
  void Dead() { mr_ = nullptr; CloseTree(); }
  int Destroy() override {
    int r = mr_ ? v_->dereg_mr(mr_) : 0;
    mr_ = nullptr;
    pin_.reset();
    keep_.Reset();
    ReleaseParents();
    return r;
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed() || !mr_) {
      ThrowState(env, "ERR_CLOSED", "memory region is closed");
      return env.Undefined();
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("addr", FromU64(env, reinterpret_cast<uint64_t>(mr_->addr)));
    o.Set("length", FromU64(env, mr_->length));
    o.Set("lkey", mr_->lkey);
    o.Set("rkey", mr_->rkey);
    return o;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseTree();
    if (destroyErr_) ThrowSys(info.Env(), "ibv_dereg_mr", destroyErr_);
    destroyErr_ = 0;
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed()); }
  const Verbs* v_ = nullptr;
  struct ibv_mr* mr_ = nullptr;
  std::unique_ptr<Pin> pin_;
  Napi::ObjectReference keep_;
};
const napi_type_tag RdmaMr::kTag = {0x7d1a2b3c4d5e6f72ULL, 0x0a1b2c3d4e5f6073ULL};

// ---------------- completion channel ----------------
// Completion events on the libuv loop: each event is acked at once (a CQ
// cannot be destroyed with unacked events) and reported with its CQ.
class RdmaChannel : public Napi::ObjectWrap<RdmaChannel>, public VerbsNode {
 public:
  static constexpr const char* kName = "CompletionChannel";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RdmaChannel", {InstanceMethod("start", &RdmaChannel::Start), InstanceMethod("ref", &RdmaChannel::Ref),
                                           InstanceMethod("close", &RdmaChannel::Close), InstanceMethod("isClosed", &RdmaChannel::IsClosed)});
  }
  explicit RdmaChannel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaChannel>(info), VerbsNode(info.Env()) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTag);
    rank_ = 5;  // after its CQs (rank 4 below), before the context
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
    parents_.push_back(Napi::Persistent(info[0].As<Napi::Object>()));
    c->Adopt(this);
    Track(env, this);
  }
  ~RdmaChannel() override { CloseTree(); }
  struct ibv_comp_channel* channel() const { return ch_; }

 private:
  void Dead() { ch_ = nullptr; CloseTree(); }
  int Destroy() override {
    if (watch_) watch_->Stop();
    onEvent_.Reset();
    int r = ch_ ? v_->destroy_comp_channel(ch_) : 0;
    ch_ = nullptr;
    ReleaseParents();
    return r;
  }
  // start(cb(cq)): cb gets the JS CompletionQueue object that has completions.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed() || !ch_) {
      ThrowState(env, "ERR_CLOSED", "completion channel is closed");
      return env.Undefined();
    }
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
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseTree();
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed()); }
  const Verbs* v_ = nullptr;
  struct ibv_comp_channel* ch_ = nullptr;
  FdWatch* watch_ = nullptr;
  Napi::FunctionReference onEvent_;
};
const napi_type_tag RdmaChannel::kTag = {0x7d1a2b3c4d5e6f76ULL, 0x0a1b2c3d4e5f6077ULL};

// ---------------- completion queue ----------------
class RdmaCq : public Napi::ObjectWrap<RdmaCq>, public VerbsNode {
 public:
  static constexpr const char* kName = "CompletionQueue";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RdmaCq", {InstanceMethod("poll", &RdmaCq::Poll), InstanceMethod("pollSpin", &RdmaCq::PollSpin),
                                      InstanceMethod("requestNotify", &RdmaCq::RequestNotify),
                                      InstanceMethod("close", &RdmaCq::Close), InstanceMethod("isClosed", &RdmaCq::IsClosed)});
  }
  explicit RdmaCq(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaCq>(info), VerbsNode(info.Env()) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTag);
    rank_ = 4;
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
    parents_.push_back(Napi::Persistent(info[0].As<Napi::Object>()));
    c->Adopt(this);
    if (ch) {
      parents_.push_back(Napi::Persistent(info[2].As<Napi::Object>()));
      ch->Adopt(this);
    }
    Track(env, this);
  }
  ~RdmaCq() override { CloseTree(); }
  struct ibv_cq* cq() const { return cq_; }

 private:
  void Dead() { cq_ = nullptr; CloseTree(); }
  int Destroy() override {
    int r = cq_ ? v_->destroy_cq(cq_) : 0;
    cq_ = nullptr;
    ReleaseParents();
    return r;
  }
  bool Live(Napi::Env env) {
    if (closed() || !cq_) {
      ThrowState(env, "ERR_CLOSED", "completion queue is closed");
      return false;
    }
    return true;
  }
  // poll(max) -> completions (never blocks)
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    uint64_t max = 16;
    if (!info[0].IsUndefined() && !ToU64(env, info[0], "max", &max)) return env.Undefined();
    max = std::min<uint64_t>(std::max<uint64_t>(max, 1), 256);
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
  Napi::Array ToJs(Napi::Env env, struct ibv_wc* wc, int n) {
    static const char* ops[] = {"SEND", "RDMA_WRITE", "RDMA_READ", "COMP_SWAP", "FETCH_ADD", "BIND_MW", "LOCAL_INV", "TSO"};
    Napi::Array out = Napi::Array::New(env, n);
    for (int i = 0; i < n; i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("wrId", Napi::BigInt::New(env, static_cast<uint64_t>(wc[i].wr_id)));
      o.Set("status", v_->wc_status_str(wc[i].status));
      o.Set("ok", wc[i].status == IBV_WC_SUCCESS);
      const char* op = wc[i].opcode & IBV_WC_RECV ? (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM ? "RECV_RDMA_WITH_IMM" : "RECV")
                                                  : (wc[i].opcode < 8 ? ops[wc[i].opcode] : "OTHER");
      o.Set("opcode", op);
      o.Set("byteLen", wc[i].byte_len);
      o.Set("qpNum", wc[i].qp_num);
      o.Set("srcQp", wc[i].src_qp);
      if (wc[i].wc_flags & IBV_WC_WITH_IMM) o.Set("imm", ntohl(wc[i].imm_data));
      out.Set(i, o);
    }
    return out;
  }

 public:
  Napi::Object JsObject() { return Value(); }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseTree();
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed()); }
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
class RdmaAh : public Napi::ObjectWrap<RdmaAh>, public VerbsNode {
 public:
  static constexpr const char* kName = "AddressHandle";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RdmaAh", {InstanceMethod("close", &RdmaAh::Close), InstanceMethod("isClosed", &RdmaAh::IsClosed)});
  }
  explicit RdmaAh(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaAh>(info), VerbsNode(info.Env()) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTag);
    rank_ = 3;
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
    parents_.push_back(Napi::Persistent(info[0].As<Napi::Object>()));
    pd->Adopt(this);
    Track(env, this);
  }
  ~RdmaAh() override { CloseTree(); }
  struct ibv_ah* ah() const { return ah_; }

 private:
  void Dead() { ah_ = nullptr; CloseTree(); }
  int Destroy() override {
    int r = ah_ ? v_->destroy_ah(ah_) : 0;
    ah_ = nullptr;
    ReleaseParents();
    return r;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseTree();
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed()); }
  const Verbs* v_ = nullptr;
  struct ibv_ah* ah_ = nullptr;
};
const napi_type_tag RdmaAh::kTag = {0x7d1a2b3c4d5e6f77ULL, 0x0a1b2c3d4e5f6078ULL};

// ---------------- shared receive queue ----------------
class RdmaSrq : public Napi::ObjectWrap<RdmaSrq>, public VerbsNode {
 public:
  static constexpr const char* kName = "SharedReceiveQueue";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RdmaSrq", {InstanceMethod("postRecv", &RdmaSrq::PostRecv), InstanceMethod("close", &RdmaSrq::Close),
                                       InstanceMethod("isClosed", &RdmaSrq::IsClosed)});
  }
  // new RdmaSrq(pd, { maxWr, maxSge })
  explicit RdmaSrq(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaSrq>(info), VerbsNode(info.Env()) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTag);
    rank_ = 4;
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
    parents_.push_back(Napi::Persistent(info[0].As<Napi::Object>()));
    pd->Adopt(this);
    Track(env, this);
  }
  ~RdmaSrq() override { CloseTree(); }
  struct ibv_srq* srq() const { return srq_; }

 private:
  void Dead() { srq_ = nullptr; CloseTree(); }
  int Destroy() override {
    int r = srq_ ? v_->destroy_srq(srq_) : 0;
    srq_ = nullptr;
    ReleaseParents();
    return r;
  }
  Napi::Value PostRecv(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseTree();
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed()); }
  const Verbs* v_ = nullptr;
  struct ibv_srq* srq_ = nullptr;
};
const napi_type_tag RdmaSrq::kTag = {0x7d1a2b3c4d5e6f78ULL, 0x0a1b2c3d4e5f6079ULL};

// ---------------- queue pair ----------------
class RdmaQp : public Napi::ObjectWrap<RdmaQp>, public VerbsNode {
 public:
  static constexpr const char* kName = "QueuePair";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RdmaQp",
                       {InstanceMethod("info", &RdmaQp::Info), InstanceMethod("modify", &RdmaQp::Modify),
                        InstanceMethod("postSend", &RdmaQp::PostSend), InstanceMethod("postRecv", &RdmaQp::PostRecv),
                        InstanceMethod("close", &RdmaQp::Close), InstanceMethod("isClosed", &RdmaQp::IsClosed)});
  }
  // new RdmaQp(pd, sendCq, recvCq, { type: 'RC'|'UD', maxSendWr, maxRecvWr, maxSendSge, maxRecvSge, maxInlineData, sigAll })
  explicit RdmaQp(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaQp>(info), VerbsNode(info.Env()) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTag);
    rank_ = 3;
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
    parents_.push_back(Napi::Persistent(info[0].As<Napi::Object>()));
    parents_.push_back(Napi::Persistent(info[1].As<Napi::Object>()));
    parents_.push_back(Napi::Persistent(info[2].As<Napi::Object>()));
    pd->Adopt(this);
    scq->Adopt(this);
    if (rcq != scq) rcq->Adopt(this);
    if (srq) {
      parents_.push_back(Napi::Persistent(o.Get("srq").As<Napi::Object>()));
      srq->Adopt(this);
    }
    Track(env, this);
  }
  ~RdmaQp() override { CloseTree(); }

 private:
  void Dead() { qp_ = nullptr; CloseTree(); }
  int Destroy() override {
    int r = qp_ ? v_->destroy_qp(qp_) : 0;
    qp_ = nullptr;
    ReleaseParents();
    return r;
  }
  bool Live(Napi::Env env) {
    if (closed() || !qp_) {
      ThrowState(env, "ERR_CLOSED", "queue pair is closed");
      return false;
    }
    return true;
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

  // An SGE list from [{ mr, offset, length }]: bounds are checked against the MR.
 public:
  static bool Sges(Napi::Env env, const Napi::Value& v, std::vector<struct ibv_sge>* out) {
    if (v.IsUndefined()) return true;
    if (!v.IsArray()) {
      ThrowType(env, "sge must be an array of { mr, offset, length }");
      return false;
    }
    Napi::Array arr = v.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) {
      if (!arr.Get(i).IsObject()) {
        ThrowType(env, "sge entries must be objects");
        return false;
      }
      Napi::Object s = arr.Get(i).As<Napi::Object>();
      RdmaMr* mr = LiveNode<RdmaMr>(env, s.Get("mr"), "sge.mr");
      uint64_t off = 0, len;
      if (!mr || (!s.Get("offset").IsUndefined() && !ToU64(env, s.Get("offset"), "sge.offset", &off)) ||
          !ToU64(env, s.Get("length"), "sge.length", &len))
        return false;
      if (off > mr->mr()->length || len > mr->mr()->length - off || len > UINT32_MAX) {
        ThrowRange(env, "sge is outside its memory region");
        return false;
      }
      out->push_back({reinterpret_cast<uint64_t>(mr->mr()->addr) + off, static_cast<uint32_t>(len), mr->mr()->lkey});
    }
    return true;
  }

  // Receive work requests from [{ wrId, sge }] (QP and SRQ alike).
  static bool RecvWrs(Napi::Env env, const Napi::Value& v, std::vector<struct ibv_recv_wr>* wrs,
                      std::vector<std::vector<struct ibv_sge>>* sges) {
    if (!v.IsArray()) {
      ThrowType(env, "work requests must be an array");
      return false;
    }
    Napi::Array arr = v.As<Napi::Array>();
    uint32_t n = arr.Length();
    wrs->resize(n);
    sges->resize(n);
    for (uint32_t i = 0; i < n; i++) {
      if (!arr.Get(i).IsObject()) {
        ThrowType(env, "work requests must be objects");
        return false;
      }
      Napi::Object o = arr.Get(i).As<Napi::Object>();
      uint64_t id = 0;
      if (!o.Get("wrId").IsUndefined() && !ToU64(env, o.Get("wrId"), "wrId", &id)) return false;
      if (!Sges(env, o.Get("sge"), &(*sges)[i])) return false;
      (*wrs)[i].wr_id = id;
      (*wrs)[i].sg_list = (*sges)[i].data();
      (*wrs)[i].num_sge = static_cast<int>((*sges)[i].size());
      (*wrs)[i].next = i + 1 < n ? &(*wrs)[i + 1] : nullptr;
    }
    return true;
  }

 private:
  // postSend([{ wrId, opcode, sge, signaled, remoteAddr, rkey, imm, compareAdd, swap, ah, remoteQpn, remoteQkey }]): one ibv_post_send.
  Napi::Value PostSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!info[0].IsArray()) {
      ThrowType(env, "work requests must be an array");
      return env.Undefined();
    }
    Napi::Array arr = info[0].As<Napi::Array>();
    uint32_t n = arr.Length();
    if (n == 0) return env.Undefined();
    std::vector<struct ibv_send_wr> wrs(n);
    std::vector<std::vector<struct ibv_sge>> sges(n);
    for (uint32_t i = 0; i < n; i++) {
      if (!arr.Get(i).IsObject()) {
        ThrowType(env, "work requests must be objects");
        return env.Undefined();
      }
      Napi::Object o = arr.Get(i).As<Napi::Object>();
      struct ibv_send_wr& w = wrs[i];
      uint64_t id = 0;
      if (!o.Get("wrId").IsUndefined() && !ToU64(env, o.Get("wrId"), "wrId", &id)) return env.Undefined();
      w.wr_id = id;
      std::string op = o.Get("opcode").IsString() ? o.Get("opcode").As<Napi::String>().Utf8Value() : "";
      if (op == "SEND") w.opcode = IBV_WR_SEND;
      else if (op == "SEND_WITH_IMM") w.opcode = IBV_WR_SEND_WITH_IMM;
      else if (op == "RDMA_WRITE") w.opcode = IBV_WR_RDMA_WRITE;
      else if (op == "RDMA_WRITE_WITH_IMM") w.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
      else if (op == "RDMA_READ") w.opcode = IBV_WR_RDMA_READ;
      else if (op == "ATOMIC_CMP_AND_SWP") w.opcode = IBV_WR_ATOMIC_CMP_AND_SWP;
      else if (op == "ATOMIC_FETCH_AND_ADD") w.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD;
      else {
        ThrowType(env, "opcode must be SEND, SEND_WITH_IMM, RDMA_WRITE, RDMA_WRITE_WITH_IMM, RDMA_READ, "
                       "ATOMIC_CMP_AND_SWP or ATOMIC_FETCH_AND_ADD");
        return env.Undefined();
      }
      if (!Sges(env, o.Get("sge"), &sges[i])) return env.Undefined();
      w.sg_list = sges[i].data();
      w.num_sge = static_cast<int>(sges[i].size());
      w.send_flags = o.Get("signaled").IsUndefined() || o.Get("signaled").ToBoolean() ? IBV_SEND_SIGNALED : 0;
      if (!o.Get("imm").IsUndefined()) {
        uint64_t imm;
        if (!ToU64(env, o.Get("imm"), "imm", &imm)) return env.Undefined();
        w.imm_data = htonl(static_cast<uint32_t>(imm));
      }
      uint64_t raddr = 0, rkey = 0;
      if (!o.Get("remoteAddr").IsUndefined() && !ToU64(env, o.Get("remoteAddr"), "remoteAddr", &raddr)) return env.Undefined();
      if (!o.Get("rkey").IsUndefined() && !ToU64(env, o.Get("rkey"), "rkey", &rkey)) return env.Undefined();
      if (w.opcode == IBV_WR_ATOMIC_CMP_AND_SWP || w.opcode == IBV_WR_ATOMIC_FETCH_AND_ADD) {
        uint64_t ca = 0, sw = 0;
        if (!o.Get("compareAdd").IsUndefined() && !ToU64(env, o.Get("compareAdd"), "compareAdd", &ca)) return env.Undefined();
        if (!o.Get("swap").IsUndefined() && !ToU64(env, o.Get("swap"), "swap", &sw)) return env.Undefined();
        w.wr.atomic.remote_addr = raddr;
        w.wr.atomic.rkey = static_cast<uint32_t>(rkey);
        w.wr.atomic.compare_add = ca;
        w.wr.atomic.swap = sw;
      } else if (type_ == IBV_QPT_UD) {
        // UD: { ah, remoteQpn, remoteQkey } name the destination of a datagram.
        RdmaAh* ah = LiveNode<RdmaAh>(env, o.Get("ah"), "ah");
        if (!ah) return env.Undefined();
        uint64_t rq = 0, qk = 0;
        if (!ToU64(env, o.Get("remoteQpn"), "remoteQpn", &rq) ||
            (!o.Get("remoteQkey").IsUndefined() && !ToU64(env, o.Get("remoteQkey"), "remoteQkey", &qk)))
          return env.Undefined();
        w.wr.ud.ah = ah->ah();
        w.wr.ud.remote_qpn = static_cast<uint32_t>(rq);
        w.wr.ud.remote_qkey = static_cast<uint32_t>(qk);
      } else {
        w.wr.rdma.remote_addr = raddr;
        w.wr.rdma.rkey = static_cast<uint32_t>(rkey);
      }
      w.next = i + 1 < n ? &wrs[i + 1] : nullptr;
    }
    struct ibv_send_wr* bad = nullptr;
    int r = ibv_post_send(qp_, wrs.data(), &bad);
    if (r) {
      Napi::Error e = MakeSys(env, "ibv_post_send", r, "queue pair state or work request not valid");
      e.Set("failedIndex", Napi::Number::New(env, bad ? static_cast<double>(bad - wrs.data()) : 0));
      e.ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }

  // postRecv([{ wrId, sge }]): one ibv_post_recv.
  Napi::Value PostRecv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    std::vector<struct ibv_recv_wr> wrs;
    std::vector<std::vector<struct ibv_sge>> sges;
    if (!RecvWrs(env, info[0], &wrs, &sges) || wrs.empty()) return env.Undefined();
    struct ibv_recv_wr* bad = nullptr;
    int r = ibv_post_recv(qp_, wrs.data(), &bad);
    if (r) {
      Napi::Error e = MakeSys(env, "ibv_post_recv", r, "queue pair state or work request not valid");
      e.Set("failedIndex", Napi::Number::New(env, bad ? static_cast<double>(bad - wrs.data()) : 0));
      e.ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseTree();
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed()); }
  const Verbs* v_ = nullptr;
  struct ibv_qp* qp_ = nullptr;
  enum ibv_qp_type type_ = IBV_QPT_RC;
};
const napi_type_tag RdmaQp::kTag = {0x7d1a2b3c4d5e6f74ULL, 0x0a1b2c3d4e5f6075ULL};

Napi::Value RdmaSrq::PostRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed() || !srq_) {
    ThrowState(env, "ERR_CLOSED", "shared receive queue is closed");
    return env.Undefined();
  }
  std::vector<struct ibv_recv_wr> wrs;
  std::vector<std::vector<struct ibv_sge>> sges;
  if (!RdmaQp::RecvWrs(env, info[0], &wrs, &sges) || wrs.empty()) return env.Undefined();
  struct ibv_recv_wr* bad = nullptr;
  int r = ibv_post_srq_recv(srq_, wrs.data(), &bad);
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
  r.Set("ACCESS_LOCAL_WRITE", static_cast<int>(IBV_ACCESS_LOCAL_WRITE));
  r.Set("ACCESS_REMOTE_WRITE", static_cast<int>(IBV_ACCESS_REMOTE_WRITE));
  r.Set("ACCESS_REMOTE_READ", static_cast<int>(IBV_ACCESS_REMOTE_READ));
  r.Set("ACCESS_REMOTE_ATOMIC", static_cast<int>(IBV_ACCESS_REMOTE_ATOMIC));
  InitRdmaCm(env, r);  // rdma_cm: native/rdma_cm.cc
  exports.Set("rdma", r);
  return exports;
}

}  // namespace sos
