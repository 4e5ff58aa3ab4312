#include "rdma/cm.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "core/fd_events.h"
#include "core/offthread.h"
#include "rdma/verbs.h"

namespace sos {

const Rdmacm* LoadRdmacm(std::string* why) {
  static Rdmacm cm;
  static std::string error;
  static bool ok = false;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string verbsWhy;
    if (!LoadVerbs(&verbsWhy)) {
      error = verbsWhy;
      return;
    }
    void* h = dlopen("librdmacm.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      error = std::string("librdmacm.so.1 is not installed (apt-get install librdmacm1): ") + dlerror();
      return;
    }
#define SOS_LOAD(name, ret, args)                                   \
  cm.name = reinterpret_cast<ret(*) args>(dlsym(h, "rdma_" #name)); \
  if (!cm.name) {                                                   \
    error = "librdmacm.so.1 lacks rdma_" #name;                     \
    return;                                                         \
  }
    SOS_RDMACM_FUNCTIONS(SOS_LOAD)
#undef SOS_LOAD
    ok = true;
  });
  if (!ok && why) *why = error;
  return ok ? &cm : nullptr;
}

namespace {

// The RdmaCmId constructor of each env, to wrap ids that arrive with
// connection requests.
std::mutex ctorMutex;
std::unordered_map<napi_env, Napi::FunctionReference*> idCtors;

Napi::Function IdCtor(Napi::Env env) {
  std::lock_guard<std::mutex> l(ctorMutex);
  auto it = idCtors.find(env);
  return it == idCtors.end() ? Napi::Function() : it->second->Value();
}

const Rdmacm* RequireCm(Napi::Env env) {
  std::string why;
  const Rdmacm* cm = LoadRdmacm(&why);
  if (!cm) ThrowState(env, "ERR_NO_RDMA", why);
  return cm;
}

bool ParseAddr(Napi::Env env, const Napi::Value& host, const Napi::Value& port, struct sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof(*ss));
  if (!host.IsString()) {
    ThrowType(env, "host must be an IPv4 or IPv6 address string");
    return false;
  }
  uint64_t p = 0;
  if (!port.IsUndefined() && !ToU64(env, port, "port", &p)) return false;
  if (p > 65535) {
    ThrowRange(env, "port must be between 0 and 65535");
    return false;
  }
  std::string h = host.As<Napi::String>().Utf8Value();
  auto* in4 = reinterpret_cast<struct sockaddr_in*>(ss);
  auto* in6 = reinterpret_cast<struct sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, h.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(p));
    return true;
  }
  if (inet_pton(AF_INET6, h.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(p));
    return true;
  }
  ThrowType(env, "host must be an IPv4 or IPv6 address string, got " + h);
  return false;
}

std::string AddrString(const struct sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const struct sockaddr_in*>(sa)->sin_addr, buf, sizeof(buf));
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const struct sockaddr_in6*>(sa)->sin6_addr, buf, sizeof(buf));
  return buf;
}

// { privateData, responderResources, initiatorDepth, retryCount, rnrRetryCount, qpNum, srq }
bool ConnParam(Napi::Env env, const Napi::Value& v, struct rdma_conn_param* p, std::string* data) {
  std::memset(p, 0, sizeof(*p));
  p->responder_resources = 1;
  p->initiator_depth = 1;
  p->retry_count = 7;
  p->rnr_retry_count = 7;
  if (v.IsUndefined()) return true;
  if (!v.IsObject()) {
    ThrowType(env, "connection parameters must be an object");
    return false;
  }
  Napi::Object o = v.As<Napi::Object>();
  struct Field {
    const char* name;
    uint8_t* dst;
    uint64_t max;
  } fields[] = {{"responderResources", &p->responder_resources, 255},
                {"initiatorDepth", &p->initiator_depth, 255},
                {"retryCount", &p->retry_count, 7},
                {"rnrRetryCount", &p->rnr_retry_count, 7}};
  for (auto& f : fields) {
    Napi::Value x = o.Get(f.name);
    if (x.IsUndefined()) continue;
    uint64_t n;
    if (!ToU64(env, x, f.name, &n)) return false;
    if (n > f.max) {
      ThrowRange(env, std::string(f.name) + " must be at most " + std::to_string(f.max));
      return false;
    }
    *f.dst = static_cast<uint8_t>(n);
  }
  if (!o.Get("qpNum").IsUndefined()) {
    uint64_t q;
    if (!ToU64(env, o.Get("qpNum"), "qpNum", &q)) return false;
    if (q > 0xffffff) {
      ThrowRange(env, "qpNum must fit in 24 bits");
      return false;
    }
    p->qp_num = static_cast<uint32_t>(q);
  }
  p->srq = o.Get("srq").ToBoolean() ? 1 : 0;
  Napi::Value pd = o.Get("privateData");
  if (!pd.IsUndefined()) {
    if (!pd.IsTypedArray() && !pd.IsBuffer()) {
      ThrowType(env, "privateData must be a Buffer or a Uint8Array");
      return false;
    }
    auto ta = pd.As<Napi::TypedArray>();
    // The smallest limit (an RC connect request on RoCE/IB carries 56 bytes).
    if (ta.ByteLength() > 56) {
      ThrowRange(env, "privateData must be at most 56 bytes");
      return false;
    }
    data->assign(static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), ta.ByteLength());
    p->private_data = data->data();
    p->private_data_len = static_cast<uint8_t>(data->size());
  }
  return true;
}

}  // namespace

class RdmaCmId;

// ---------------- event channel ----------------
class RdmaCmChannel : public VerbsWrap<RdmaCmChannel> {
 public:
  static constexpr const char* kName = "CmEventChannel";
  static constexpr const char* kWhat = "rdma_cm event channel";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(env, "RdmaCmChannel",
                  {InstanceMethod("start", &RdmaCmChannel::Start), InstanceMethod("ref", &RdmaCmChannel::SetRef)});
  }
  explicit RdmaCmChannel(const Napi::CallbackInfo& info) : VerbsWrap(info, 9) {
    Napi::Env env = info.Env();
    cm_ = RequireCm(env);
    if (!cm_) {
      Dead();
      return;
    }
    ch_ = cm_->create_event_channel();
    if (!ch_) {
      int err = errno ? errno : ENODEV;
      ThrowSys(env, "rdma_create_event_channel", err,
               err == ENOENT || err == ENODEV ? "no rdma_cm on this kernel (/dev/infiniband/rdma_cm is missing)" : "");
      Dead();
      return;
    }
    if (!SetNonBlocking(env, ch_->fd)) {
      Dead();
      return;
    }
    events_.SetRef(false);
    Track(env, this);
  }
  ~RdmaCmChannel() override { CloseTree(); }
  struct rdma_event_channel* channel() const {
    return ch_;
  }
  const Rdmacm* cm() const { return cm_; }

 private:
  int Destroy() override {
    events_.Stop();
    if (ch_) cm_->destroy_event_channel(ch_);
    ch_ = nullptr;
    return 0;
  }
  // start(cb(event)): connection-manager events, read on the libuv loop.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    events_.Start(info, ch_->fd, [this] { OnEvents(); });
    return env.Undefined();
  }
  // ref(bool): whether pending connection-manager work keeps the process alive.
  Napi::Value SetRef(const Napi::CallbackInfo& info) {
    events_.SetRef(info[0].ToBoolean());
    return info.Env().Undefined();
  }
  void OnEvents();
  const Rdmacm* cm_ = nullptr;
  struct rdma_event_channel* ch_ = nullptr;
  FdEvents events_;
  Napi::ObjectReference pending_;  // a connection request's new id, until reported
};
const napi_type_tag RdmaCmChannel::kTag = {0x7d1a2b3c4d5e6f80ULL, 0x0a1b2c3d4e5f6081ULL};

// ---------------- communication id ----------------
// new RdmaCmId(channel): an RC (RDMA_PS_TCP) id whose events arrive on channel.
class RdmaCmId : public VerbsWrap<RdmaCmId> {
 public:
  static constexpr const char* kName = "CmId";
  static constexpr const char* kWhat = "rdma_cm id";
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return Define(
        env, "RdmaCmId",
        {InstanceMethod("bind", &RdmaCmId::Bind), InstanceMethod("listen", &RdmaCmId::Listen),
         InstanceMethod("resolveAddr", &RdmaCmId::ResolveAddr), InstanceMethod("resolveRoute", &RdmaCmId::ResolveRoute),
         InstanceMethod("connect", &RdmaCmId::Connect), InstanceMethod("accept", &RdmaCmId::Accept),
         InstanceMethod("reject", &RdmaCmId::Reject), InstanceMethod("establish", &RdmaCmId::Establish),
         InstanceMethod("disconnect", &RdmaCmId::Disconnect), InstanceMethod("qpAttr", &RdmaCmId::QpAttr),
         InstanceMethod("info", &RdmaCmId::Info)});
  }
  explicit RdmaCmId(const Napi::CallbackInfo& info) : VerbsWrap(info, 8) {
    Napi::Env env = info.Env();
    RdmaCmChannel* ch = UnwrapTagged<RdmaCmChannel>(info[0], &RdmaCmChannel::kTag);
    if (!ch) {
      ThrowType(env, "channel must be a CmEventChannel");
      Dead();
      return;
    }
    if (ch->closed()) {
      ThrowState(env, "ERR_CLOSED", "channel (CmEventChannel) is closed");
      Dead();
      return;
    }
    cm_ = ch->cm();
    if (info[1].IsExternal()) {
      // An id that arrived with a connection request (made natively only).
      id_ = info[1].As<Napi::External<struct rdma_cm_id>>().Data();
      id_->context = this;
    } else if (cm_->create_id(ch->channel(), &id_, this, RDMA_PS_TCP) != 0) {
      id_ = nullptr;
      ThrowSys(env, "rdma_create_id", errno ? errno : ENOMEM);
      Dead();
      return;
    }
    Hold(info[0], ch);
    Track(env, this);
  }
  ~RdmaCmId() override { CloseTree(); }
  const char* DestroyCall() const override { return "rdma_destroy_id"; }

 private:
  int Destroy() override {
    int r = id_ && cm_->destroy_id(id_) != 0 ? errno : 0;
    id_ = nullptr;
    return r;
  }
  // librdmacm dereferences id->verbs in these calls: an id without a device
  // (address not resolved or bound) would crash it.
  bool HasDevice(Napi::Env env, const char* call) {
    if (id_->verbs) return true;
    ThrowSys(env, call, EINVAL, "the id has no device yet (resolve or bind its address first)");
    return false;
  }
  Napi::Value Result(Napi::Env env, int r, const char* call, const char* detail = "") {
    if (r != 0) ThrowSys(env, call, errno ? errno : EINVAL, detail);
    return env.Undefined();
  }
  // bind(host, port)
  Napi::Value Bind(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    struct sockaddr_storage ss;
    if (!ParseAddr(env, info[0], info[1], &ss)) return env.Undefined();
    return Result(env, cm_->bind_addr(id_, reinterpret_cast<struct sockaddr*>(&ss)), "rdma_bind_addr");
  }
  // listen(backlog)
  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    uint64_t backlog = 16;
    if (!info[0].IsUndefined() && !ToU64(env, info[0], "backlog", &backlog)) return env.Undefined();
    return Result(env, cm_->listen(id_, static_cast<int>(std::min<uint64_t>(backlog, 4096))), "rdma_listen");
  }
  // resolveAddr(host, port, timeoutMs[, srcHost]): ADDR_RESOLVED or ADDR_ERROR follows.
  Napi::Value ResolveAddr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    struct sockaddr_storage dst, src;
    uint64_t timeout = 2000;
    if (!ParseAddr(env, info[0], info[1], &dst)) return env.Undefined();
    if (!info[2].IsUndefined() && !ToU64(env, info[2], "timeoutMs", &timeout)) return env.Undefined();
    bool haveSrc = !info[3].IsUndefined() && !info[3].IsNull();
    if (haveSrc && !ParseAddr(env, info[3], Napi::Value(), &src)) return env.Undefined();
    int r = cm_->resolve_addr(id_, haveSrc ? reinterpret_cast<struct sockaddr*>(&src) : nullptr,
                              reinterpret_cast<struct sockaddr*>(&dst),
                              static_cast<int>(std::min<uint64_t>(timeout, 600000)));
    return Result(env, r, "rdma_resolve_addr");
  }
  // resolveRoute(timeoutMs): ROUTE_RESOLVED or ROUTE_ERROR follows.
  Napi::Value ResolveRoute(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!HasDevice(env, "rdma_resolve_route")) return env.Undefined();
    uint64_t timeout = 2000;
    if (!info[0].IsUndefined() && !ToU64(env, info[0], "timeoutMs", &timeout)) return env.Undefined();
    return Result(env, cm_->resolve_route(id_, static_cast<int>(std::min<uint64_t>(timeout, 600000))),
                  "rdma_resolve_route");
  }
  // connect({ qpNum, privateData, ... }): CONNECT_RESPONSE (then establish()), REJECTED,
  // UNREACHABLE or CONNECT_ERROR follows.
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!HasDevice(env, "rdma_connect")) return env.Undefined();
    struct rdma_conn_param p;
    std::string data;
    if (!ConnParam(env, info[0], &p, &data)) return env.Undefined();
    return Result(env, cm_->connect(id_, &p), "rdma_connect", "route not resolved, or already connecting");
  }
  Napi::Value Accept(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!HasDevice(env, "rdma_accept")) return env.Undefined();
    struct rdma_conn_param p;
    std::string data;
    if (!ConnParam(env, info[0], &p, &data)) return env.Undefined();
    return Result(env, cm_->accept(id_, &p), "rdma_accept", "not a connection request, or already answered");
  }
  // reject([privateData])
  Napi::Value Reject(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    std::string data;
    if (!info[0].IsUndefined()) {
      if (!info[0].IsTypedArray()) {
        ThrowType(env, "privateData must be a Buffer or a Uint8Array");
        return env.Undefined();
      }
      auto ta = info[0].As<Napi::TypedArray>();
      if (ta.ByteLength() > 148) {
        ThrowRange(env, "privateData must be at most 148 bytes");
        return env.Undefined();
      }
      data.assign(static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), ta.ByteLength());
    }
    return Result(env, cm_->reject(id_, data.empty() ? nullptr : data.data(), static_cast<uint8_t>(data.size())),
                  "rdma_reject");
  }
  Napi::Value Establish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!HasDevice(env, "rdma_establish")) return env.Undefined();
    return Result(env, cm_->establish(id_), "rdma_establish");
  }
  Napi::Value Disconnect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!HasDevice(env, "rdma_disconnect")) return env.Undefined();
    return Result(env, cm_->disconnect(id_), "rdma_disconnect", "not connected");
  }
  // qpAttr(state): the attributes (for QueuePair.modify) that move this id's
  // QP to INIT, RTR or RTS, as the connection manager computed them.
  Napi::Value QpAttr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    std::string s = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    struct ibv_qp_attr a = {};
    if (s == "INIT")
      a.qp_state = IBV_QPS_INIT;
    else if (s == "RTR")
      a.qp_state = IBV_QPS_RTR;
    else if (s == "RTS")
      a.qp_state = IBV_QPS_RTS;
    else {
      ThrowType(env, "state must be 'INIT', 'RTR' or 'RTS'");
      return env.Undefined();
    }
    int mask = 0;
    if (cm_->init_qp_attr(id_, &a, &mask) != 0) {
      ThrowSys(env, "rdma_init_qp_attr", errno ? errno : EINVAL, "the id is not far enough in connecting for " + s);
      return env.Undefined();
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("state", s);
    if (mask & IBV_QP_PKEY_INDEX) o.Set("pkeyIndex", a.pkey_index);
    if (mask & IBV_QP_PORT) o.Set("portNum", a.port_num);
    if (mask & IBV_QP_ACCESS_FLAGS) o.Set("access", a.qp_access_flags);
    if (mask & IBV_QP_QKEY) o.Set("qkey", a.qkey);
    if (mask & IBV_QP_PATH_MTU) o.Set("pathMtu", 128 << a.path_mtu);
    if (mask & IBV_QP_DEST_QPN) o.Set("destQpNum", a.dest_qp_num);
    if (mask & IBV_QP_RQ_PSN) o.Set("rqPsn", a.rq_psn);
    if (mask & IBV_QP_SQ_PSN) o.Set("sqPsn", a.sq_psn);
    if (mask & IBV_QP_MAX_DEST_RD_ATOMIC) o.Set("maxDestRdAtomic", a.max_dest_rd_atomic);
    if (mask & IBV_QP_MAX_QP_RD_ATOMIC) o.Set("maxRdAtomic", a.max_rd_atomic);
    if (mask & IBV_QP_MIN_RNR_TIMER) o.Set("minRnrTimer", a.min_rnr_timer);
    if (mask & IBV_QP_TIMEOUT) o.Set("timeout", a.timeout);
    if (mask & IBV_QP_RETRY_CNT) o.Set("retryCnt", a.retry_cnt);
    if (mask & IBV_QP_RNR_RETRY) o.Set("rnrRetry", a.rnr_retry);
    if ((mask & IBV_QP_AV) && a.ah_attr.is_global) {
      char gid[INET6_ADDRSTRLEN];
      inet_ntop(AF_INET6, a.ah_attr.grh.dgid.raw, gid, sizeof(gid));
      o.Set("dgid", gid);
      o.Set("sgidIndex", a.ah_attr.grh.sgid_index);
      o.Set("hopLimit", a.ah_attr.grh.hop_limit);
      o.Set("ahPort", a.ah_attr.port_num);
    }
    return o;
  }
  // info(): { device, port, localAddress, localPort, peerAddress, peerPort }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    Napi::Object o = Napi::Object::New(env);
    const Verbs* v = LoadVerbs(nullptr);
    if (id_->verbs && v) o.Set("device", v->get_device_name(id_->verbs->device));
    if (id_->port_num) o.Set("port", id_->port_num);
    std::string la = AddrString(rdma_get_local_addr(id_)), pa = AddrString(rdma_get_peer_addr(id_));
    if (!la.empty()) {
      o.Set("localAddress", la);
      o.Set("localPort", ntohs(cm_->get_src_port(id_)));
    }
    if (!pa.empty()) {
      o.Set("peerAddress", pa);
      o.Set("peerPort", ntohs(cm_->get_dst_port(id_)));
    }
    return o;
  }
  const Rdmacm* cm_ = nullptr;
  struct rdma_cm_id* id_ = nullptr;
};
const napi_type_tag RdmaCmId::kTag = {0x7d1a2b3c4d5e6f81ULL, 0x0a1b2c3d4e5f6082ULL};

// Each event is copied, acked (an id cannot be destroyed with unacked
// events), then reported: { type, status, id, listenId?, privateData?,
// qpNum?, responderResources?, initiatorDepth? }. A connection request's new
// id is wrapped first; when JS cannot take it, it is refused.
void RdmaCmChannel::OnEvents() {
  Ref();  // JS may drop us in a callback: stay until the loop ends
  struct rdma_cm_event* ev;
  while (ch_ && cm_->get_cm_event(ch_, &ev) == 0) {
    enum rdma_cm_event_type type = ev->event;
    int status = ev->status;
    struct rdma_cm_id* id = ev->id;
    struct rdma_cm_id* listen = ev->listen_id;
    bool conn = type == RDMA_CM_EVENT_CONNECT_REQUEST || type == RDMA_CM_EVENT_CONNECT_RESPONSE ||
                type == RDMA_CM_EVENT_ESTABLISHED || type == RDMA_CM_EVENT_REJECTED;
    std::string data;
    uint32_t qpNum = 0;
    uint8_t rr = 0, idepth = 0;
    if (conn && id->ps == RDMA_PS_TCP) {
      if (ev->param.conn.private_data && ev->param.conn.private_data_len)
        data.assign(static_cast<const char*>(ev->param.conn.private_data), ev->param.conn.private_data_len);
      qpNum = ev->param.conn.qp_num;
      rr = ev->param.conn.responder_resources;
      idepth = ev->param.conn.initiator_depth;
    }
    std::string name = cm_->event_str(type);
    if (name.rfind("RDMA_CM_EVENT_", 0) == 0) name = name.substr(14);
    bool canJs = !events_.callback().IsEmpty() && CanRunJs(env_);
    Napi::Env env(env_);
    if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
      RdmaCmId* wrapped = nullptr;
      if (canJs) {
        Napi::HandleScope scope(env);
        Napi::Function ctor = IdCtor(env);
        if (!ctor.IsEmpty()) {
          Napi::Object o = ctor.New({JsObject(), Napi::External<struct rdma_cm_id>::New(env, id)});
          if (!env.IsExceptionPending()) {
            wrapped = Napi::ObjectWrap<RdmaCmId>::Unwrap(o);
            pending_ = Napi::Persistent(o);
          } else {
            env.GetAndClearPendingException();
          }
        }
      }
      cm_->ack_cm_event(ev);
      if (!wrapped) {
        cm_->reject(id, nullptr, 0);
        cm_->destroy_id(id);
        continue;
      }
    } else {
      cm_->ack_cm_event(ev);
    }
    if (!canJs) continue;
    Napi::HandleScope scope(env);
    auto* node = static_cast<RdmaCmId*>(id->context);
    Napi::Object o = Napi::Object::New(env);
    o.Set("type", name);
    o.Set("status", status);
    if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
      o.Set("id", pending_.Value());
      pending_.Reset();
      if (listen && listen->context) o.Set("listenId", static_cast<RdmaCmId*>(listen->context)->JsObject());
    } else if (node && !node->closed()) {
      o.Set("id", node->JsObject());
    } else {
      continue;  // its id was closed meanwhile
    }
    if (conn) {
      if (!data.empty()) o.Set("privateData", Napi::Buffer<char>::Copy(env, data.data(), data.size()));
      o.Set("qpNum", qpNum);
      o.Set("responderResources", rr);
      o.Set("initiatorDepth", idepth);
    }
    events_.callback().MakeCallback(env.Global(), {o});
    if (env.IsExceptionPending()) break;
  }
  Unref();
}

void InitRdmaCm(Napi::Env env, Napi::Object rdma) {
  Napi::Function idCtor = RdmaCmId::Init(env);
  {
    std::lock_guard<std::mutex> l(ctorMutex);
    idCtors[env] = new Napi::FunctionReference(Napi::Persistent(idCtor));
  }
  napi_add_env_cleanup_hook(
      env,
      [](void* arg) {
        std::lock_guard<std::mutex> l(ctorMutex);
        auto it = idCtors.find(static_cast<napi_env>(arg));
        if (it != idCtors.end()) {
          delete it->second;
          idCtors.erase(it);
        }
      },
      env);
  rdma.Set("RdmaCmChannel", RdmaCmChannel::Init(env));
  rdma.Set("RdmaCmId", idCtor);
  rdma.Set("cmStatus", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
             std::string why;
             Napi::Object o = Napi::Object::New(info.Env());
             o.Set("library", LoadRdmacm(&why) != nullptr);
             if (!why.empty()) o.Set("reason", why);
             return o;
           }));
}

}  // namespace sos
