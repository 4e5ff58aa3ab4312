#include "rdma/context.h"

#include <endian.h>

#include <string>

#include "core/offthread.h"

namespace sos {

// ---------------- device list ----------------
Napi::Value Devices(const Napi::CallbackInfo& info) {
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
    d.Set("transport", list[i]->transport_type == IBV_TRANSPORT_IB      ? "ib"
                       : list[i]->transport_type == IBV_TRANSPORT_IWARP ? "iwarp"
                                                                        : "other");
    out.Set(i, d);
  }
  v->free_device_list(list);
  return out;
}

Napi::Value Status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string why;
  Napi::Object o = Napi::Object::New(env);
  o.Set("library", LoadVerbs(&why) != nullptr);
  if (!why.empty()) o.Set("reason", why);
  return o;
}

const napi_type_tag RdmaContext::kTag = {0x7d1a2b3c4d5e6f70ULL, 0x0a1b2c3d4e5f6071ULL};

Napi::Function RdmaContext::Init(Napi::Env env) {
  return Define(
      env, "RdmaContext",
      {InstanceMethod("query", &RdmaContext::Query), InstanceMethod("queryPort", &RdmaContext::QueryPort),
       InstanceMethod("queryGid", &RdmaContext::QueryGid), InstanceMethod("startEvents", &RdmaContext::StartEvents)});
}

RdmaContext::RdmaContext(const Napi::CallbackInfo& info) : VerbsWrap(info, 7) {
  Napi::Env env = info.Env();
  v_ = RequireVerbs(env);
  if (!v_) {
    Dead();
    return;
  }
  if (!info[0].IsString()) {
    ThrowType(env, "device name must be a string");
    Dead();
    return;
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int n = 0;
  struct ibv_device** list = v_->get_device_list(&n);
  if (!list) {
    ThrowSys(env, "ibv_get_device_list", errno ? errno : ENODEV, "no RDMA devices on this kernel");
    Dead();
    return;
  }
  struct ibv_device* dev = nullptr;
  for (int i = 0; i < n; i++)
    if (name == v_->get_device_name(list[i])) dev = list[i];
  if (dev) ctx_ = v_->open_device(dev);
  int err = errno;
  v_->free_device_list(list);
  if (!dev) {
    ThrowSys(env, "ibv_open_device", ENODEV, "no RDMA device named " + name);
    Dead();
    return;
  }
  if (!ctx_) {
    ThrowSys(env, "ibv_open_device", err ? err : EIO);
    Dead();
    return;
  }
  Track(env, this);
}

int RdmaContext::Destroy() {
  events_.Stop();
  return Release(ctx_, v_->close_device);
}

Napi::Value RdmaContext::StartEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  events_.SetRef(false);
  events_.Start(info, ctx_->async_fd, [this] { OnAsyncEvents(); });
  return env.Undefined();
}

void RdmaContext::OnAsyncEvents() {
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
    if (events_.callback().IsEmpty() || !CanRunJs(env_)) continue;
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("type", type);
    if (port >= 0) o.Set("port", port);
    if (qpn >= 0) o.Set("qpNum", Napi::Number::New(env, static_cast<double>(qpn)));
    events_.callback().MakeCallback(env.Global(), {o});
  }
}

Napi::Value RdmaContext::Query(const Napi::CallbackInfo& info) {
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

Napi::Value RdmaContext::QueryPort(const Napi::CallbackInfo& info) {
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

Napi::Value RdmaContext::QueryGid(const Napi::CallbackInfo& info) {
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

}  // namespace sos
