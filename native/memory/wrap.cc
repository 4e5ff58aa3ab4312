#include "memory/wrap.h"

#include <arpa/inet.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>

#include "core/common.h"
#include "core/offthread.h"
#include "memory/client.h"
#include "memory/rdma_link.h"
#include "memory/server.h"
#include "uffd/page_source.h"

namespace sos {

using mem::Bytes;

static bool GetU32(Napi::Env env, Napi::Object o, const char* k, uint32_t* out) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) return true;
  uint64_t x;
  if (!ToU64(env, v, k, &x)) return false;
  if (x > UINT32_MAX) {
    ThrowRange(env, std::string(k) + " out of range");
    return false;
  }
  *out = static_cast<uint32_t>(x);
  return true;
}

static Bytes BufferBytes(Napi::Value v) {
  auto b = v.As<Napi::Buffer<uint8_t>>();
  return Bytes(b.Data(), b.Data() + b.Length());
}

// { caPem, certPem, keyPem, crlPem?, cluster, roles?, peerName? } (lib/memory/tls.ts has checked the
// shapes and that the PEM loads) into a context; false with an exception pending when it cannot be.
static bool TlsFrom(Napi::Env env, Napi::Value v, bool server, std::shared_ptr<mem::TlsContext>* out) {
  if (v.IsUndefined()) return true;
  if (!v.IsObject()) {
    ThrowType(env, "tls must be an object");
    return false;
  }
  Napi::Object o = v.As<Napi::Object>();
  mem::TlsOptions t;
  struct Field {
    const char* key;
    std::string* into;
    bool required;
  };
  for (const Field& f :
       {Field{"caPem", &t.caPem, true}, Field{"certPem", &t.certPem, true}, Field{"keyPem", &t.keyPem, true},
        Field{"crlPem", &t.crlPem, false}, Field{"cluster", &t.cluster, true}, Field{"peerName", &t.peerName, false}}) {
    Napi::Value x = o.Get(f.key);
    if (x.IsUndefined() && !f.required) continue;
    if (!x.IsString()) {
      ThrowType(env, std::string("tls.") + f.key + " must be a string");
      return false;
    }
    *f.into = x.As<Napi::String>().Utf8Value();
  }
  if (o.Get("roles").IsArray()) {
    Napi::Array a = o.Get("roles").As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++)
      if (a.Get(i).IsString()) t.roles.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  }
  std::string err;
  *out = mem::TlsContext::Create(t, server, &err);
  if (!*out) {
    ThrowState(env, "ERR_BAD_CERT", "the TLS credentials do not load: " + err);
    return false;
  }
  return true;
}

static Napi::Object CountersObject(Napi::Env env, const mem::Counters& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("reservedPages", FromU64(env, c.reservedPages));
  o.Set("heldPages", FromU64(env, c.heldPages));
  o.Set("regions", FromU64(env, c.regions));
  o.Set("requests", FromU64(env, c.requests));
  o.Set("bytesIn", FromU64(env, c.bytesIn));
  o.Set("bytesOut", FromU64(env, c.bytesOut));
  o.Set("errors", FromU64(env, c.errors));
  o.Set("authFailures", FromU64(env, c.authFailures));
  return o;
}

class NodeWrap : public Napi::ObjectWrap<NodeWrap>, public Closable {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "NativeMemoryNode",
        {InstanceMethod("listen", &NodeWrap::Listen), InstanceMethod("addApplication", &NodeWrap::AddApplication),
         InstanceMethod("removeApplication", &NodeWrap::RemoveApplication), InstanceMethod("stats", &NodeWrap::Stats),
         InstanceMethod("setTls", &NodeWrap::SetTls), InstanceMethod("close", &NodeWrap::Close)});
  }
  explicit NodeWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NodeWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      ThrowType(env, "options must be an object");
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    mem::ServerOptions so;
    if (!ToU64(env, o.Get("capacityPages"), "capacityPages", &so.capacityPages)) return;
    if (!GetU32(env, o, "leaseMs", &so.leaseMs) || !GetU32(env, o, "handshakeMs", &so.handshakeMs) ||
        !GetU32(env, o, "maxUnauthenticated", &so.maxUnauthenticated))
      return;
    if (o.Get("rdma").IsObject()) {
      Napi::Object r = o.Get("rdma").As<Napi::Object>();
      so.rdma.enabled = true;
      if (r.Get("device").IsString()) so.rdma.device = r.Get("device").As<Napi::String>().Utf8Value();
      uint32_t gid = 1;
      if (!GetU32(env, r, "gidIndex", &gid) || !GetU32(env, r, "perConnection", &so.rdma.perConnection)) return;
      so.rdma.gidIndex = static_cast<int>(gid);
      // A node told to serve RDMA that cannot says so now, not at its first client.
      std::string err;
      if (!RdmaLink::Open(so.rdma.device, so.rdma.gidIndex, 1, &err)) {
        ThrowState(env, "ERR_NO_RDMA", "memory node cannot serve RDMA: " + err);
        return;
      }
    }
    if (!TlsFrom(env, o.Get("tls"), true, &so.tls)) return;
    tls_ = so.tls != nullptr;
    server_ = std::make_unique<mem::Server>(so);
    env_ = env;
    Track(env, this);
  }
  ~NodeWrap() override { Shut(); }
  int CloseRank() const override { return 40; }
  void CloseForTeardown() override { Shut(); }

 private:
  void Shut() {
    if (!server_) return;
    server_->Stop();
    server_.reset();
    Untrack(Napi::Env(env_), this);
  }
  bool Open(Napi::Env env) {
    if (server_) return true;
    ThrowState(env, "ERR_CLOSED", "memory node is closed");
    return false;
  }
  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (listening_) {
      ThrowState(env, "ERR_BUSY", "memory node is already listening");
      return env.Undefined();
    }
    std::string host = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    uint64_t port = 0;
    if (!ToU64(env, info[1], "port", &port)) return env.Undefined();
    std::string bh;
    uint16_t bp = 0;
    int r = server_->Listen(host, static_cast<uint16_t>(port), &bh, &bp);
    if (r < 0) {
      ThrowSys(env, "listen", -r, host + ":" + std::to_string(port));
      return env.Undefined();
    }
    listening_ = true;
    Napi::Object a = Napi::Object::New(env);
    a.Set("host", bh);
    a.Set("port", bp);
    return a;
  }
  Napi::Value AddApplication(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    server_->AddApplication(info[0].As<Napi::String>().Utf8Value(), BufferBytes(info[1]));
    return env.Undefined();
  }
  Napi::Value RemoveApplication(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    return Napi::Boolean::New(env, server_->RemoveApplication(info[0].As<Napi::String>().Utf8Value()));
  }
  // setTls(tls): new connections use these credentials (a node made without TLS stays without).
  Napi::Value SetTls(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (!tls_) {
      ThrowState(env, "ERR_UNSUPPORTED", "this memory node was made without TLS");
      return env.Undefined();
    }
    std::shared_ptr<mem::TlsContext> t;
    if (!info[0].IsObject()) {
      ThrowType(env, "setTls takes the tls options");
      return env.Undefined();
    }
    if (!TlsFrom(env, info[0], true, &t)) return env.Undefined();
    server_->SetTls(std::move(t));
    return env.Undefined();
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    mem::Server::Snapshot s = server_->Stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("capacityPages", FromU64(env, s.capacity));
    o.Set("reservedPages", FromU64(env, s.reserved));
    o.Set("connections", FromU64(env, s.connections));
    o.Set("unauthenticated", FromU64(env, s.unauthenticated));
    o.Set("badFrames", FromU64(env, s.badFrames));
    o.Set("refusedConnections", FromU64(env, s.refusedConnections));
    o.Set("expiredRegions", FromU64(env, s.expired));
    o.Set("rdmaExports", FromU64(env, s.rdmaExports));
    o.Set("tlsRefused", FromU64(env, s.tlsRefused));
    o.Set("total", CountersObject(env, s.total));
    Napi::Object apps = Napi::Object::New(env);
    for (auto& [name, c] : s.apps) apps.Set(name, CountersObject(env, c));
    o.Set("applications", apps);
    Napi::Array log = Napi::Array::New(env, s.log.size());
    for (size_t i = 0; i < s.log.size(); i++) log.Set(static_cast<uint32_t>(i), s.log[i]);
    o.Set("log", log);
    return o;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shut();
    return info.Env().Undefined();
  }

  std::unique_ptr<mem::Server> server_;
  napi_env env_ = nullptr;
  bool listening_ = false;
  bool tls_ = false;
};

// A source shared by the handle, its in-flight jobs and any engine serving from it.
struct RemoteSlot {
  std::shared_ptr<mem::RemoteSource> source;
  bool connecting = false, closed = false;
};

static Napi::Value Reject(Napi::Env env, Napi::Promise::Deferred& d, const char* code, const std::string& msg) {
  ThrowState(env, code, msg);
  Napi::Error e = env.GetAndClearPendingException();
  d.Reject(e.Value());
  return env.Undefined();
}

class RemoteWrap : public Napi::ObjectWrap<RemoteWrap>, public Closable {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "NativeRemote",
        {InstanceMethod("connect", &RemoteWrap::Connect), InstanceMethod("read", &RemoteWrap::Read),
         InstanceMethod("write", &RemoteWrap::Write), InstanceMethod("remoteStats", &RemoteWrap::RemoteStats),
         InstanceMethod("attachRdma", &RemoteWrap::AttachRdma), InstanceMethod("info", &RemoteWrap::Info),
         InstanceMethod("adopt", &RemoteWrap::Adopt), InstanceMethod("close", &RemoteWrap::Close),
         InstanceMethod("detach", &RemoteWrap::Detach)});
  }
  explicit RemoteWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<RemoteWrap>(info), slot_(std::make_shared<RemoteSlot>()), env_(info.Env()) {
    Track(info.Env(), this);
  }
  ~RemoteWrap() override {
    if (slot_->source) slot_->source->Shutdown();  // GC'd unclosed: the lease frees the region
    if (!untracked_) Untrack(Napi::Env(env_), this);
  }
  int CloseRank() const override { return 20; }  // before the engines' sources go
  void CloseForTeardown() override {
    untracked_ = true;
    if (slot_->source) slot_->source->Shutdown();
  }

 private:
  std::shared_ptr<mem::RemoteSource> Live(Napi::Env env) {
    if (!slot_->source || slot_->closed) {
      ThrowState(env, "ERR_CLOSED", "remote store is closed");
      return nullptr;
    }
    return slot_->source;
  }

  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (slot_->source || slot_->connecting) {
      ThrowState(env, "ERR_BUSY", "already connected");
      return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    auto opt = std::make_shared<mem::ConnectOptions>();
    opt->host = o.Get("host").As<Napi::String>().Utf8Value();
    opt->application = o.Get("application").As<Napi::String>().Utf8Value();
    uint32_t port = 0, version = mem::kVersion;
    if (!GetU32(env, o, "port", &port) || !GetU32(env, o, "timeoutMs", &opt->timeoutMs) ||
        !GetU32(env, o, "version", &version) || !ToU64(env, o.Get("size"), "size", &opt->size))
      return env.Undefined();
    if (!o.Get("region").IsUndefined() && !ToU64(env, o.Get("region"), "region", &opt->region)) return env.Undefined();
    opt->port = static_cast<uint16_t>(port);
    opt->version = static_cast<uint16_t>(version);
    opt->secret = BufferBytes(o.Get("secret"));
    if (!TlsFrom(env, o.Get("tls"), false, &opt->tls)) return env.Undefined();
    slot_->connecting = true;
    auto slot = slot_;
    auto result = std::make_shared<std::pair<std::shared_ptr<mem::RemoteSource>, mem::ConnectError>>();
    return OffThread::Start(
        env, [opt, result] { result->first = mem::RemoteSource::Connect(*opt, &result->second); },
        [slot, result](Napi::Env env, Napi::Promise::Deferred& d, bool js) {
          slot->connecting = false;
          if (result->first && slot->closed) result->first->Release();
          if (result->first && !slot->closed) slot->source = result->first;
          if (!js) return;
          if (slot->source) {
            d.Resolve(env.Undefined());
          } else if (result->second.err) {
            d.Reject(MakeSys(env, "connect", result->second.err, result->second.message).Value());
          } else {
            Reject(env, d, result->second.code.c_str(), result->second.message);
          }
        });
  }

  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = Live(env);
    if (!s) return env.Undefined();
    uint64_t off, len;
    if (!ToU64(env, info[0], "offset", &off) || !ToU64(env, info[1], "length", &len)) return env.Undefined();
    auto buf = std::make_shared<Bytes>(len);
    auto rc = std::make_shared<int>(0);
    return OffThread::Start(
        env, [s, buf, off, len, rc] { *rc = s->Fetch(off, buf->data(), len); },
        [buf, rc](Napi::Env env, Napi::Promise::Deferred& d, bool js) {
          if (!js) return;
          if (*rc < 0) return d.Reject(MakeSys(env, "memory.read", -*rc).Value());
          d.Resolve(Napi::Buffer<uint8_t>::Copy(env, buf->data(), buf->size()));
        });
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = Live(env);
    if (!s) return env.Undefined();
    uint64_t off;
    if (!ToU64(env, info[0], "offset", &off)) return env.Undefined();
    auto data = std::make_shared<Bytes>(BufferBytes(info[1]));
    auto rc = std::make_shared<int>(0);
    return OffThread::Start(
        env, [s, data, off, rc] { *rc = s->Store(off, data->data(), data->size()); },
        [rc](Napi::Env env, Napi::Promise::Deferred& d, bool js) {
          if (!js) return;
          if (*rc < 0) return d.Reject(MakeSys(env, "memory.write", -*rc).Value());
          d.Resolve(env.Undefined());
        });
  }

  Napi::Value RemoteStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = Live(env);
    if (!s) return env.Undefined();
    auto out = std::make_shared<std::array<uint64_t, 4>>();
    auto rc = std::make_shared<int>(0);
    return OffThread::Start(
        env, [s, out, rc] { *rc = s->RemoteStats(out->data()); },
        [out, rc](Napi::Env env, Napi::Promise::Deferred& d, bool js) {
          if (!js) return;
          if (*rc < 0) return d.Reject(MakeSys(env, "memory.stats", -*rc).Value());
          Napi::Object o = Napi::Object::New(env);
          o.Set("capacityPages", FromU64(env, (*out)[0]));
          o.Set("reservedPages", FromU64(env, (*out)[1]));
          o.Set("heldPages", FromU64(env, (*out)[2]));
          o.Set("regions", FromU64(env, (*out)[3]));
          d.Resolve(o);
        });
  }

  // attachRdma({ qpn, psn, gid }) -> Promise<{ qpn, psn, gid, addr, rkey }>: the node's queue pair,
  // connected to the given one, and the region's pages registered on it.
  Napi::Value AttachRdma(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = Live(env);
    if (!s) return env.Undefined();
    if (!info[0].IsObject()) {
      ThrowType(env, "attachRdma takes { qpn, psn, gid }");
      return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    uint64_t qpn, psn;
    if (!ToU64(env, o.Get("qpn"), "qpn", &qpn) || !ToU64(env, o.Get("psn"), "psn", &psn)) return env.Undefined();
    auto ep = std::make_shared<std::array<uint8_t, mem::kEndpoint>>();
    auto out = std::make_shared<std::array<uint8_t, mem::kAttachReply>>();
    mem::Put32(ep->data(), static_cast<uint32_t>(qpn));
    mem::Put32(ep->data() + 4, static_cast<uint32_t>(psn));
    if (qpn > 0xffffff || psn > 0xffffff || !o.Get("gid").IsString() ||
        inet_pton(AF_INET6, o.Get("gid").As<Napi::String>().Utf8Value().c_str(), ep->data() + 8) != 1) {
      ThrowRange(env, "qpn and psn must fit in 24 bits and gid must be an IPv6-form GID");
      return env.Undefined();
    }
    auto rc = std::make_shared<int>(0);
    return OffThread::Start(
        env, [s, ep, out, rc] { *rc = s->AttachRdma(ep->data(), out->data()); },
        [out, rc](Napi::Env env, Napi::Promise::Deferred& d, bool js) {
          if (!js) return;
          if (*rc < 0) return d.Reject(MakeSys(env, "memory.attachRdma", -*rc).Value());
          const uint8_t* x = out->data();
          char gid[INET6_ADDRSTRLEN];
          inet_ntop(AF_INET6, x + 8, gid, sizeof gid);
          Napi::Object r = Napi::Object::New(env);
          r.Set("qpn", mem::Get32(x));
          r.Set("psn", mem::Get32(x + 4));
          r.Set("gid", gid);
          r.Set("addr", FromU64(env, mem::Get64(x + 24)));
          r.Set("rkey", mem::Get32(x + 32));
          d.Resolve(r);
        });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    auto& s = slot_->source;
    o.Set("closed", !s || slot_->closed);
    if (!s) return o;
    char id[17];
    snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(s->regionId()));
    o.Set("region", id);
    o.Set("size", FromU64(env, s->Size()));
    o.Set("leaseMs", s->leaseMs());
    int dead = s->dead();
    o.Set("error", dead ? ErrnoName(-dead) : "");
    o.Set("requests", FromU64(env, s->counters.requests));
    o.Set("bytesIn", FromU64(env, s->counters.bytesIn));
    o.Set("bytesOut", FromU64(env, s->counters.bytesOut));
    o.Set("errors", FromU64(env, s->counters.errors));
    o.Set("renewals", FromU64(env, s->counters.renewals));
    return o;
  }

  // adopt(nativeSource): that PageSource handle now serves from this connection.
  Napi::Value Adopt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = Live(env);
    if (!s) return env.Undefined();
    SourceWrap* w = SourceWrap::Unwrap(info[0]);
    if (!w) {
      ThrowType(env, "adopt() takes a NativeSource");
      return env.Undefined();
    }
    w->Adopt(s);
    return env.Undefined();
  }

  // close(): FREE the region and end the connection (engines still holding the source get -ESHUTDOWN).
  // A connection already lost cannot FREE: its region goes when the lease lapses, and close still resolves.
  Napi::Value Close(const Napi::CallbackInfo& info) { return End(info, true); }

  // detach(): end the connection and keep the region (its lease runs on): another process opens it by id.
  Napi::Value Detach(const Napi::CallbackInfo& info) { return End(info, false); }

  Napi::Value End(const Napi::CallbackInfo& info, bool free) {
    Napi::Env env = info.Env();
    auto s = slot_->source;
    slot_->closed = true;
    if (!s) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    return OffThread::Start(
        env,
        [s, free] {
          if (free)
            s->Release();
          else
            s->Shutdown();
        },
        [](Napi::Env env, Napi::Promise::Deferred& d, bool js) {
          if (js) d.Resolve(env.Undefined());
        });
  }

  std::shared_ptr<RemoteSlot> slot_;
  napi_env env_;
  bool untracked_ = false;
};

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeMemoryNode", NodeWrap::Init(env));
  exports.Set("NativeRemote", RemoteWrap::Init(env));
}

}  // namespace sos
