// JS handle on an RdmaLink (native/memory/rdma_link.h):
//   new NativeRdmaLink({ device, gidIndex, depth })
//   local() -> { qpn, psn, gid }         this end, for the peer
//   connect({ qpn, psn, gid })           INIT -> RTR -> RTS
//   exportRegion(region) -> { addr, rkey, length }
//                                        a memory node's side: the region's
//                                        pages readable and writable by the
//                                        peer of this link only (its PD)
//   bindSource(nativeSource, { addr, rkey, size })
//                                        a client's side: the handle then
//                                        serves pages over this link, which
//                                        it takes over (the link is spent)
//   close()                              idempotent; exports deregistered
#include <napi.h>

#include <arpa/inet.h>

#include <memory>
#include <vector>

#include "core/common.h"
#include "memory/rdma_link.h"
#include "uffd/mapping.h"
#include "uffd/page_source.h"

namespace sos {

namespace {
const napi_type_tag kLinkTag = {0x7d1e5a0c3b2f4e61ULL, 0x92a3b4c5d6e7f809ULL};

std::string GidText(const uint8_t* g) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, g, buf, sizeof(buf));
  return buf;
}
}  // namespace

class RdmaLinkWrap : public Napi::ObjectWrap<RdmaLinkWrap>, public Closable {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "NativeRdmaLink",
        {InstanceMethod("local", &RdmaLinkWrap::LocalEnd), InstanceMethod("connect", &RdmaLinkWrap::Connect),
         InstanceMethod("exportRegion", &RdmaLinkWrap::ExportRegion),
         InstanceMethod("bindSource", &RdmaLinkWrap::BindSource), InstanceMethod("close", &RdmaLinkWrap::Close)});
  }

  explicit RdmaLinkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaLinkWrap>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kLinkTag);
    std::string device;
    uint64_t gidIndex = 1, depth = 64;
    if (info[0].IsObject()) {
      Napi::Object o = info[0].As<Napi::Object>();
      if (o.Get("device").IsString()) device = o.Get("device").As<Napi::String>().Utf8Value();
      if (!o.Get("gidIndex").IsUndefined() && !ToU64(env, o.Get("gidIndex"), "gidIndex", &gidIndex)) return;
      if (!o.Get("depth").IsUndefined() && !ToU64(env, o.Get("depth"), "depth", &depth)) return;
    }
    if (gidIndex > 255 || depth < 1 || depth > 4096) {
      ThrowRange(env, "gidIndex must be at most 255 and depth between 1 and 4096");
      return;
    }
    std::string err;
    link_ = RdmaLink::Open(device, static_cast<int>(gidIndex), static_cast<uint32_t>(depth), &err);
    if (!link_) {
      ThrowState(env, "ERR_NO_RDMA", "cannot open an RDMA link: " + err);
      return;
    }
    Track(env, this);
    tracked_ = true;
  }

  ~RdmaLinkWrap() override { Release(); }
  int CloseRank() const override { return 12; }  // before the regions it exported
  void CloseForTeardown() override { Release(); }

 private:
  struct Export {
    Export(std::shared_ptr<Mapping> m, struct ibv_mr* r) : pin(std::move(m)), mr(r) {}
    Pin pin;  // the region stays mapped while the peer may read it
    struct ibv_mr* mr;
  };

  void Release() {
    if (link_)
      for (auto& e : exports_) link_->Deregister(e->mr);
    exports_.clear();
    link_.reset();
    if (tracked_) {
      tracked_ = false;
      Untrack(Napi::Env(env_), this);
    }
  }

  bool Live(Napi::Env env) {
    if (link_) return true;
    ThrowState(env, "ERR_CLOSED", "RDMA link is closed (or handed to a page source)");
    return false;
  }

  Napi::Value LocalEnd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    const RdmaEndpoint& e = link_->Local();
    Napi::Object o = Napi::Object::New(env);
    o.Set("qpn", e.qpn);
    o.Set("psn", e.psn);
    o.Set("gid", GidText(e.gid));
    return o;
  }

  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!info[0].IsObject()) {
      ThrowType(env, "connect takes { qpn, psn, gid }");
      return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    uint64_t qpn, psn;
    if (!ToU64(env, o.Get("qpn"), "qpn", &qpn) || !ToU64(env, o.Get("psn"), "psn", &psn)) return env.Undefined();
    RdmaEndpoint r;
    r.qpn = static_cast<uint32_t>(qpn & 0xffffff);
    r.psn = static_cast<uint32_t>(psn & 0xffffff);
    if (qpn > 0xffffff || psn > 0xffffff || !o.Get("gid").IsString() ||
        inet_pton(AF_INET6, o.Get("gid").As<Napi::String>().Utf8Value().c_str(), r.gid) != 1) {
      ThrowRange(env, "qpn and psn must fit in 24 bits and gid must be an IPv6-form GID");
      return env.Undefined();
    }
    const char* call = "";
    if (int err = link_->Connect(r, &call)) ThrowSys(env, call, err);
    return env.Undefined();
  }

  Napi::Value ExportRegion(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    RegionWrap* rw = RegionWrap::Unwrap(info[0]);
    if (!rw || !rw->mapping()) {
      ThrowType(env, "exportRegion takes an open Region");
      return env.Undefined();
    }
    std::shared_ptr<Mapping> m = rw->mapping();
    int err = 0;
    struct ibv_mr* mr = link_->Register(
        m->base, m->size, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE, &err);
    if (!mr) {
      ThrowSys(env, "ibv_reg_mr", err);
      return env.Undefined();
    }
    exports_.push_back(std::make_unique<Export>(m, mr));
    Napi::Object o = Napi::Object::New(env);
    o.Set("addr", FromU64(env, reinterpret_cast<uint64_t>(m->base)));
    o.Set("rkey", mr->rkey);
    o.Set("length", FromU64(env, m->size));
    return o;
  }

  Napi::Value BindSource(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    SourceWrap* s = SourceWrap::Unwrap(info[0]);
    if (!s || !info[1].IsObject()) {
      ThrowType(env, "bindSource(nativeSource, { addr, rkey, size })");
      return env.Undefined();
    }
    Napi::Object o = info[1].As<Napi::Object>();
    uint64_t addr, rkey, size;
    if (!ToU64(env, o.Get("addr"), "addr", &addr) || !ToU64(env, o.Get("rkey"), "rkey", &rkey) ||
        !ToU64(env, o.Get("size"), "size", &size))
      return env.Undefined();
    if (rkey > UINT32_MAX || size == 0 || size % 4096) {
      ThrowRange(env, "rkey must fit in 32 bits and size be a positive multiple of 4096");
      return env.Undefined();
    }
    if (!exports_.empty()) {
      ThrowState(env, "ERR_BUSY", "a link that exports regions cannot also be a page source");
      return env.Undefined();
    }
    int err = 0;
    auto src = std::make_shared<RdmaSource>(std::move(link_), addr, static_cast<uint32_t>(rkey), size, &err);
    Release();
    if (err) {
      ThrowSys(env, "ibv_reg_mr", err, "registering the page source's bounce buffer");
      return env.Undefined();
    }
    s->Adopt(src);
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  napi_env env_;
  std::unique_ptr<RdmaLink> link_;
  std::vector<std::unique_ptr<Export>> exports_;
  bool tracked_ = false;
};

Napi::Function InitRdmaLink(Napi::Env env) { return RdmaLinkWrap::Init(env); }

}  // namespace sos
