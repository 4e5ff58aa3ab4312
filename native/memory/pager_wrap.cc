#include "memory/pager_wrap.h"

#include "core/offthread.h"
#include "uffd/mapping.h"
#include "uffd/uffd.h"
#include "uffd/uffd_abi.h"

namespace sos {

Napi::Function PagerWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativePager",
                     {InstanceMethod("stats", &PagerWrap::Stats), InstanceMethod("states", &PagerWrap::States),
                      InstanceMethod("discard", &PagerWrap::Discard), InstanceMethod("flush", &PagerWrap::Flush),
                      InstanceMethod("close", &PagerWrap::Close)});
}

PagerWrap::PagerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PagerWrap>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  UffdWrap* u = UffdWrap::Unwrap(info[0]);
  RegionWrap* region = RegionWrap::Unwrap(info[1]);
  RegionWrap* staging = RegionWrap::Unwrap(info[2]);
  SourceWrap* backing = SourceWrap::Unwrap(info[3]);
  SourceWrap* host = SourceWrap::Unwrap(info[4]);
  if (!u || !region || !staging || !backing || !host || !info[5].IsObject() || !info[6].IsFunction()) {
    ThrowType(env, "NativePager(uffd, region, staging, backing, host, options, onEvent)");
    return;
  }
  auto core = u->core();
  if (!core || !core->apiDone) {
    ThrowState(env, "ERR_CLOSED", "the userfaultfd must be open and past its api() handshake");
    return;
  }
  if (!region->mapping() || !staging->mapping() || !backing->source()) {
    ThrowState(env, "ERR_CLOSED", "region, staging area and source must be open");
    return;
  }
  Napi::Object o = info[5].As<Napi::Object>();
  PagerOptions po;
  uint64_t v;
  // faultAddress: the region is a memfd shared with another process, whose
  // mapping of it at that address is what faults (and what the uffd covers).
  bool foreign = !o.Get("faultAddress").IsUndefined();
  if (foreign && !ToU64(env, o.Get("faultAddress"), "faultAddress", &po.faultBase)) return;
  const auto& rm = region->mapping();
  bool regionOk = foreign ? (rm->kind == "memfd" || rm->kind == "file") && rm->shared : rm->kind == "anonymous";
  if (!regionOk || staging->mapping()->kind != "anonymous" || rm->pageSize != 4096 ||
      staging->mapping()->pageSize != 4096) {
    ThrowType(env, foreign ? "with faultAddress the region must be a shared mapping (a memfd) of 4 KiB pages"
                           : "region and staging area must be anonymous memory of 4 KiB pages (the pager's unit)");
    return;
  }
  if (foreign && (po.faultBase == 0 || po.faultBase % 4096 != 0 || core->ownProcess)) {
    ThrowType(env, "faultAddress must be a page-aligned address in the process that owns the userfaultfd");
    return;
  }
  po.shared = foreign;
  std::string eviction = o.Get("eviction").IsString() ? o.Get("eviction").As<Napi::String>().Utf8Value() : "";
  if (eviction != "move" && eviction != "copy") {
    ThrowType(env, "options.eviction must be 'move' or 'copy'");
    return;
  }
  po.eviction = eviction == "move" ? Eviction::kMove : Eviction::kCopy;
  po.poison = o.Get("poison").ToBoolean();
  if (po.eviction == Eviction::kMove && !(core->features & UFFD_FEATURE_MOVE)) {
    ThrowState(env, "ERR_UNSUPPORTED", "move eviction needs UFFD_FEATURE_MOVE");
    return;
  }
  if (po.poison && !(core->features & UFFD_FEATURE_POISON)) {
    ThrowState(env, "ERR_UNSUPPORTED", "poisoning pages needs UFFD_FEATURE_POISON");
    return;
  }
  if (!ToU64(env, o.Get("localPages"), "localPages", &po.localPages)) return;
  if (!ToU64(env, o.Get("maxDepth"), "maxDepth", &v)) return;
  po.maxDepth = static_cast<unsigned>(std::min<uint64_t>(v, 255));  // one READ carries 256 pages
  po.asyncDirty = o.Get("asyncDirty").ToBoolean();
  po.prefetch = o.Get("prefetch").ToBoolean();
  po.stagingPages = staging->mapping()->size / 4096;
  if (foreign && (po.eviction != Eviction::kCopy || po.asyncDirty)) {
    ThrowType(env, "a foreign region needs copy eviction and synchronous dirty tracking");
    return;
  }
  if (po.asyncDirty && po.eviction == Eviction::kCopy) {
    // WP_ASYNC resolves writes in the kernel: one during the copy would be lost.
    ThrowType(env, "copy eviction needs synchronous dirty tracking (asyncDirty false)");
    return;
  }
  if (po.asyncDirty && (!(core->features & UFFD_FEATURE_WP_ASYNC) || !PagemapScanSupported())) {
    ThrowState(env, "ERR_UNSUPPORTED", "async dirty tracking needs UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN");
    return;
  }
  if (po.localPages < 16 || po.stagingPages == 0 || po.stagingPages >= po.localPages) {
    ThrowRange(env, "localPages too small for the staging area");
    return;
  }
  events_ = std::make_shared<Events>();
  events_->tsfn = Napi::ThreadSafeFunction::New(env, info[6].As<Napi::Function>(), "sos:pager", 0, 1);
  events_->tsfn.Unref(env);
  events_->live = true;
  std::weak_ptr<Events> weak = events_;
  auto emit = [weak](const char* call, int err, uint64_t addr) {
    auto ev = weak.lock();
    if (!ev) return;
    std::lock_guard<std::mutex> lk(ev->mu);
    if (!ev->live) return;
    std::string c = call;
    auto* data = new std::function<Napi::Value(Napi::Env)>([c, err, addr](Napi::Env env) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("type", "error");
      e.Set("error", MakeSys(env, c.c_str(), err, "in the far-memory pager").Value());
      e.Set("address", FromU64(env, addr));
      return e;
    });
    napi_status st =
        ev->tsfn.NonBlockingCall(data, [](Napi::Env env, Napi::Function cb, std::function<Napi::Value(Napi::Env)>* d) {
          if (env != nullptr && cb != nullptr && CanRunJs(env)) cb.Call({(*d)(env)});
          delete d;
        });
    if (st != napi_ok) delete data;
  };
  eviction_ = po.eviction;
  poison_ = po.poison;
  pager_ = std::make_shared<Pager>(core, region->mapping(), staging->mapping(), backing->source(), po, emit);
  pager_->Start();
  host->Adopt(pager_);
  Track(env, this);
}

PagerWrap::~PagerWrap() { DoClose(); }

void PagerWrap::DoClose() {
  if (closed_) return;
  closed_ = true;
  if (pager_) pager_->Stop();
  pager_.reset();  // the region and staging mappings go when the engine lets go too
  if (events_) {
    std::lock_guard<std::mutex> lk(events_->mu);
    if (events_->live) events_->tsfn.Release();
    events_->live = false;
  }
  Untrack(Napi::Env(env_), this);
}

Napi::Value PagerWrap::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  if (!pager_) return o;
  const PagerStats& s = pager_->stats();
  auto n = [&](const char* k, uint64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
  n("faults", s.faults);
  n("wpFaults", s.wpFaults);
  n("fetches", s.fetches);
  n("pagesFetched", s.pagesFetched);
  n("evictions", s.evictions);
  n("cleanDrops", s.cleanDrops);
  n("writeBacks", s.writeBacks);
  n("writeBackBatches", s.writeBackBatches);
  n("prefetched", s.prefetched);
  n("prefetchHits", s.prefetchHits);
  n("prefetchWaste", s.prefetchWaste);
  n("bytesIn", s.bytesIn);
  n("bytesOut", s.bytesOut);
  n("stagedHits", s.stagedHits);
  n("raceCatches", s.raceCatches);
  n("fetchErrors", s.fetchErrors);
  n("storeErrors", s.storeErrors);
  n("poisoned", s.poisoned);
  n("fetchRetries", s.fetchRetries);
  n("frameWaits", s.frameWaits);
  n("scans", s.scans);
  n("writtenSeen", s.writtenSeen);
  n("zeroFills", s.zeroFills);
  n("readaheads", s.readaheads);
  n("triggers", s.triggers);
  n("evictFlushes", s.evictFlushes);
  n("residentPages", pager_->Resident());
  n("usedPages", pager_->Used());
  o.Set("eviction", eviction_ == Eviction::kMove ? "move" : "copy");
  o.Set("fetchFailure", poison_ ? "poison" : "wait");
  o.Set("faultLatency", LatencyToJs(env, s.faultLatency));
  o.Set("writeBackLatency", LatencyToJs(env, s.writeBackLatency));
  return o;
}

// states() -> Uint8Array: per page 0 remote, 1 fetching, 2 resident, 3 staged, 4 poisoned, 5 held.
Napi::Value PagerWrap::States(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!pager_) return Napi::Uint8Array::New(env, 0);
  std::vector<uint8_t> s = pager_->States();
  auto out = Napi::Uint8Array::New(env, s.size());
  if (!s.empty()) memcpy(out.Data(), s.data(), s.size());
  return out;
}

// A call of the pager off the JS thread: its result 0 resolves, -EINVAL rejects
// with `range`, another -errno with the errno of `call`.
Napi::Value PagerWrap::OffThread(const Napi::CallbackInfo& info, std::function<int(Pager&)> fn, const char* call,
                                 const char* range) {
  Napi::Env env = info.Env();
  if (!pager_) {
    ThrowState(env, "ERR_CLOSED", "pager is closed");
    return env.Undefined();
  }
  auto pager = pager_;
  auto result = std::make_shared<int>(0);
  return sos::OffThread::Start(
      env, [pager, fn, result] { *result = fn(*pager); },
      [result, call, range](Napi::Env env, Napi::Promise::Deferred& d, bool canRunJs) {
        if (!canRunJs) return;
        int r = *result;
        if (r == 0) return d.Resolve(env.Undefined());
        if (r == -EINVAL && range)
          ThrowRange(env, range);
        else
          ThrowSys(env, call, -r);
        d.Reject(env.GetAndClearPendingException().Value());
      });
}

// discard(firstPage, count) -> Promise<void>: the pages read as zeros again
// (Pager::Discard). Off the JS thread: it may wait out a write-back.
Napi::Value PagerWrap::Discard(const Napi::CallbackInfo& info) {
  uint64_t first, count;
  if (!ToU64(info.Env(), info[0], "firstPage", &first) || !ToU64(info.Env(), info[1], "count", &count))
    return info.Env().Undefined();
  return OffThread(
      info, [first, count](Pager& p) { return p.Discard(first, count); }, "pager.discard",
      "discard(firstPage, count): range outside the region");
}

// flush(running?) -> Promise<void>: pages written back and dropped (Pager::Flush), off the JS thread.
Napi::Value PagerWrap::Flush(const Napi::CallbackInfo& info) {
  bool running = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
  return OffThread(
      info, [running](Pager& p) { return p.Flush(running); }, "pager.flush", nullptr);
}

// close() -> the final counters (exact: no pager thread runs any more).
Napi::Value PagerWrap::Close(const Napi::CallbackInfo& info) {
  Napi::Value last = info.Env().Undefined();
  if (pager_) {
    pager_->Stop();
    last = Stats(info);
  }
  DoClose();
  return last;
}

}  // namespace sos
