#include "memory/replica_set.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/common.h"
#include "core/offthread.h"

namespace sos {

// ---- Lane ----
Lane::Lane() : thread_(&Lane::Run, this) {}

Lane::~Lane() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Lane::Post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> l(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void Lane::Run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, nothing left
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    l.unlock();
    job();
    l.lock();
  }
}

// ---- ReplicatedSource ----
namespace {
// Errors that say the caller asked for something wrong, not that the replica
// failed: they are returned as they are and cost no replica.
bool CallerError(int err) { return err == -EINVAL || err == -ERANGE || err == -EFAULT || err == -ENOTSUP; }
}  // namespace

ReplicatedSource::ReplicatedSource(uint64_t size, OnEvent onEvent)
    : size_(size), onEvent_(std::move(onEvent)), stored_((size / 4096 + 63) / 64) {}

ReplicatedSource::~ReplicatedSource() { Stop(); }

void ReplicatedSource::Stop() {
  stopping_ = true;
  std::vector<std::thread> ts;
  {
    std::lock_guard<std::mutex> l(syncMu_);
    ts.swap(syncs_);
  }
  for (auto& t : ts)
    if (t.joinable()) t.join();
}

ReplicatedSource::Snapshot ReplicatedSource::Current() {
  std::shared_lock<std::shared_mutex> l(mu_);
  return replicas_;
}

void ReplicatedSource::MarkLost(const std::shared_ptr<Replica>& r, int err) {
  State was = r->state.exchange(State::kLost);
  if (was == State::kLost) return;
  r->lostErrno = err;
  if (onEvent_) onEvent_(was == State::kSyncing ? "syncFailed" : "lost", r->id, err);
}

void ReplicatedSource::MarkStored(uint64_t off, uint64_t len) {
  for (uint64_t p = off / 4096, end = (off + len + 4095) / 4096; p < end && p / 64 < stored_.size(); p++) {
    uint64_t bit = 1ULL << (p % 64);
    if (!(stored_[p / 64].fetch_or(bit, std::memory_order_relaxed) & bit)) storedPages_++;
  }
}

int ReplicatedSource::Discard(uint64_t off, uint64_t len) {
  for (uint64_t p = off / 4096, end = (off + len) / 4096; p < end && p / 64 < stored_.size(); p++) {
    uint64_t bit = 1ULL << (p % 64);
    if (stored_[p / 64].fetch_and(~bit, std::memory_order_relaxed) & bit) storedPages_--;
  }
  return 0;
}

std::vector<uint64_t> ReplicatedSource::StoredBits() const {
  std::vector<uint64_t> out(stored_.size());
  for (size_t i = 0; i < out.size(); i++) out[i] = stored_[i].load(std::memory_order_relaxed);
  return out;
}

void ReplicatedSource::SetStored(const uint8_t* bits, size_t bytes) {
  uint64_t n = 0;
  for (size_t i = 0; i < stored_.size(); i++) {
    uint64_t w = 0;
    if (i * 8 < bytes) memcpy(&w, bits + i * 8, std::min<size_t>(8, bytes - i * 8));
    if (i == stored_.size() - 1 && size_ / 4096 % 64) w &= (1ULL << (size_ / 4096 % 64)) - 1;  // no page past the end
    stored_[i].store(w, std::memory_order_relaxed);
    n += __builtin_popcountll(w);
  }
  storedPages_ = n;
}

bool ReplicatedSource::IsStored(uint64_t page) const {
  return page / 64 < stored_.size() && (stored_[page / 64].load(std::memory_order_relaxed) >> (page % 64)) & 1;
}

uint64_t ReplicatedSource::AddLive(std::shared_ptr<PageSource> src, std::string label) {
  auto r = std::make_shared<Replica>();
  r->src = std::move(src);
  r->label = std::move(label);
  r->lane = std::make_unique<Lane>();
  std::unique_lock<std::shared_mutex> l(mu_);
  r->id = nextId_++;
  replicas_.push_back(r);
  return r->id;
}

uint64_t ReplicatedSource::AddAndSync(std::shared_ptr<PageSource> src, std::string label) {
  auto r = std::make_shared<Replica>();
  r->src = std::move(src);
  r->label = std::move(label);
  r->lane = std::make_unique<Lane>();
  r->state = State::kSyncing;
  {
    std::unique_lock<std::shared_mutex> l(mu_);
    r->id = nextId_++;
    replicas_.push_back(r);
  }
  std::lock_guard<std::mutex> l(syncMu_);
  syncs_.emplace_back(&ReplicatedSource::Sync, this, r);
  return r->id;
}

std::vector<ReplicatedSource::Info> ReplicatedSource::Replicas() {
  std::vector<Info> out;
  for (auto& r : Current()) out.push_back({r->id, r->label, r->state.load(), r->lostErrno});
  return out;
}

int ReplicatedSource::Fetch(uint64_t off, void* buf, uint64_t len) {
  Io io{off, buf, len, 0};
  return FetchV(&io, 1);
}

int ReplicatedSource::Store(uint64_t off, const void* buf, uint64_t len) {
  Io io{off, const_cast<void*>(buf), len, 0};
  return StoreV(&io, 1);
}

// Runs never stored read as zeros without a round trip (this set is the only
// writer of its replicas); the rest go to the first live replica, and what
// fails there is retried on the next.
int ReplicatedSource::FetchV(Io* ios, size_t n) {
  std::vector<Io*> todo;
  for (size_t i = 0; i < n; i++) {
    ios[i].result = 0;
    bool any = false;
    for (uint64_t p = ios[i].off / 4096, e = (ios[i].off + ios[i].len + 4095) / 4096; p < e && !any; p++)
      any = IsStored(p);
    if (any)
      todo.push_back(&ios[i]);
    else
      memset(ios[i].buf, 0, ios[i].len);
  }
  int lastErr = -EIO;
  for (auto& r : Current()) {
    if (todo.empty()) break;
    if (r->state.load() != State::kLive) continue;
    std::vector<Io> batch;
    for (Io* io : todo) batch.push_back({io->off, io->buf, io->len, 0});
    r->src->FetchV(batch.data(), batch.size());
    std::vector<Io*> failed;
    bool lost = false;
    for (size_t i = 0; i < batch.size(); i++) {
      if (batch[i].result == 0) continue;
      if (CallerError(batch[i].result)) {
        todo[i]->result = batch[i].result;
        continue;
      }
      lastErr = batch[i].result;
      lost = true;
      failed.push_back(todo[i]);
    }
    if (lost) {
      MarkLost(r, -lastErr);
      failovers_++;
    }
    todo.swap(failed);
  }
  for (Io* io : todo) io->result = lastErr;  // no live replica had them
  int first = 0;
  for (size_t i = 0; i < n && !first; i++) first = ios[i].result;
  return first;
}

std::vector<std::unique_lock<std::mutex>> ReplicatedSource::LockStripes(const Io* ios, size_t n) {
  bool want[kStripes] = {};
  for (size_t i = 0; i < n; i++) {
    uint64_t s0 = ios[i].off / 4096 / kStripePages, s1 = (ios[i].off + ios[i].len + 4095) / 4096;
    s1 = s1 ? (s1 - 1) / kStripePages : 0;
    for (uint64_t s = s0; s <= s1 && s < s0 + kStripes; s++) want[s % kStripes] = true;
  }
  std::vector<std::unique_lock<std::mutex>> locks;  // in index order: no deadlock
  for (size_t s = 0; s < kStripes; s++)
    if (want[s]) locks.emplace_back(stripes_[s]);
  return locks;
}

// The same runs to every replica that is live or filling, in parallel (each
// on its lane, the first on this thread). A run succeeds when a live replica
// took it; a replica that fails any run is dropped (its copy is stale).
int ReplicatedSource::Fanout(Io* ios, size_t n) {
  Snapshot targets;
  for (auto& r : Current())
    if (r->state.load() != State::kLost) targets.push_back(r);
  if (targets.empty()) {
    for (size_t i = 0; i < n; i++) ios[i].result = -EIO;
    return -EIO;
  }
  std::vector<std::vector<Io>> copies(targets.size(), std::vector<Io>(ios, ios + n));
  std::mutex mu;
  std::condition_variable cv;
  size_t pending = targets.size() - 1;
  for (size_t t = 1; t < targets.size(); t++) {
    targets[t]->lane->Post([&, t] {
      targets[t]->src->StoreV(copies[t].data(), n);
      std::lock_guard<std::mutex> l(mu);
      if (--pending == 0) cv.notify_one();
    });
  }
  targets[0]->src->StoreV(copies[0].data(), n);
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return pending == 0; });
  }
  for (size_t i = 0; i < n; i++) ios[i].result = -EIO;
  for (size_t t = 0; t < targets.size(); t++) {
    int err = 0;
    for (size_t i = 0; i < n; i++) {
      int r = copies[t][i].result;
      if (r == 0) {
        if (targets[t]->state.load() == State::kLive) ios[i].result = 0;
      } else if (CallerError(r)) {
        ios[i].result = r;
      } else if (!err) {
        err = r;
      }
    }
    if (err) MarkLost(targets[t], -err);
  }
  int first = 0;
  for (size_t i = 0; i < n; i++) {
    if (ios[i].result == 0)
      MarkStored(ios[i].off, ios[i].len);
    else if (!first)
      first = ios[i].result;
  }
  return first;
}

int ReplicatedSource::StoreV(Io* ios, size_t n) {
  auto locks = LockStripes(ios, n);  // no fill copies a stripe under us
  return Fanout(ios, n);
}

// Fill a new replica: stripe by stripe, under the stripe's lock (so no write
// to it interleaves), read the stored pages from a live replica and write them.
void ReplicatedSource::Sync(std::shared_ptr<Replica> r) {
  const uint64_t pages = size_ / 4096;
  const uint64_t chunk = kStripePages * 4096;
  void* mem = mmap(nullptr, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    MarkLost(r, errno);
    return;
  }
  uint8_t* buf = static_cast<uint8_t*>(mem);
  bool ok = true;
  for (uint64_t s = 0; s * kStripePages < pages && ok; s++) {
    if (stopping_ || r->state.load() == State::kLost) {
      ok = false;
      break;
    }
    std::lock_guard<std::mutex> l(stripes_[s % kStripes]);
    std::vector<Io> runs;
    uint64_t p0 = s * kStripePages, p1 = std::min(pages, p0 + kStripePages);
    for (uint64_t p = p0; p < p1; p++) {
      if (!IsStored(p)) continue;
      if (!runs.empty() && runs.back().off + runs.back().len == p * 4096)
        runs.back().len += 4096;
      else
        runs.push_back({p * 4096, buf + (p - p0) * 4096, 4096, 0});
    }
    if (runs.empty()) continue;
    // From the live replicas only (FetchV skips the filling one).
    if (FetchV(runs.data(), runs.size()) != 0) {
      ok = false;
      MarkLost(r, EIO);  // nothing left to copy from
      break;
    }
    r->src->StoreV(runs.data(), runs.size());
    for (auto& io : runs) {
      if (io.result != 0) {
        ok = false;
        MarkLost(r, -io.result);
        break;
      }
      syncedPages_ += io.len / 4096;
    }
  }
  munmap(mem, chunk);
  if (!ok) return;
  State want = State::kSyncing;
  if (r->state.compare_exchange_strong(want, State::kLive) && onEvent_) onEvent_("synced", r->id, 0);
}

// ---- JS wrap ----
struct ReplicaEmitter {
  std::mutex mu;
  Napi::ThreadSafeFunction tsfn;
  bool live = false;
  int filling = 0;  // JS thread only: fills in progress keep the process alive
};

namespace {
const napi_type_tag kSetTag = {0x5a17e0c1d2b3a495ULL, 0x86f7e8d9cabbccddULL};

const char* StateName(ReplicatedSource::State s) {
  switch (s) {
    case ReplicatedSource::State::kSyncing: return "syncing";
    case ReplicatedSource::State::kLive: return "live";
    default: return "lost";
  }
}
}  // namespace

Napi::Function ReplicaSetWrap::Init(Napi::Env env) {
  return DefineClass(
      env, "NativeReplicaSet",
      {InstanceMethod("add", &ReplicaSetWrap::Add), InstanceMethod("bind", &ReplicaSetWrap::Bind),
       InstanceMethod("replicas", &ReplicaSetWrap::Replicas), InstanceMethod("stats", &ReplicaSetWrap::Stats),
       InstanceMethod("write", &ReplicaSetWrap::Write), InstanceMethod("stored", &ReplicaSetWrap::Stored),
       InstanceMethod("setStored", &ReplicaSetWrap::SetStored), InstanceMethod("close", &ReplicaSetWrap::Close)});
}

ReplicaSetWrap::ReplicaSetWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReplicaSetWrap>(info) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kSetTag);
  uint64_t size;
  if (!ToU64(env, info[0], "size", &size)) return;
  if (size == 0 || size % 4096) {
    ThrowRange(env, "size must be a positive multiple of 4096");
    return;
  }
  if (!info[1].IsFunction()) {
    ThrowType(env, "onEvent must be a function");
    return;
  }
  auto em = std::make_shared<ReplicaEmitter>();
  em->tsfn = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "sos:replica-set", 0, 1);
  em->tsfn.Unref(env);
  em->live = true;
  emitter_ = em;
  set_ = std::make_shared<ReplicatedSource>(size, [em](const char* type, uint64_t id, int err) {
    std::lock_guard<std::mutex> l(em->mu);
    if (!em->live) return;
    std::string t = type;
    em->tsfn.NonBlockingCall([em, t, id, err](Napi::Env env, Napi::Function cb) {
      if (env == nullptr || cb == nullptr || !CanRunJs(env)) return;
      if ((t == "synced" || t == "syncFailed") && em->filling > 0 && --em->filling == 0 && em->live)
        em->tsfn.Unref(env);
      cb.Call({Napi::String::New(env, t), FromU64(env, id), Napi::Number::New(env, err)});
    });
  });
}

ReplicaSetWrap::~ReplicaSetWrap() { Shutdown(); }

void ReplicaSetWrap::Shutdown() {
  if (set_) set_->Stop();
  if (emitter_) {
    std::lock_guard<std::mutex> l(emitter_->mu);
    if (emitter_->live) {
      emitter_->live = false;
      emitter_->tsfn.Release();
    }
  }
  set_.reset();
}

// add(source, label, sync): sync=false for replicas that start identical
// (all empty at creation); true to fill a fresh one from a live replica.
Napi::Value ReplicaSetWrap::Add(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!set_) {
    ThrowState(env, "ERR_CLOSED", "replica set is closed");
    return env.Undefined();
  }
  SourceWrap* s = SourceWrap::Unwrap(info[0]);
  if (!s || !s->source()) {
    ThrowType(env, "source must be an open PageSource");
    return env.Undefined();
  }
  if (s->source().get() == set_.get()) {
    ThrowType(env, "a replica set cannot be its own replica");
    return env.Undefined();
  }
  std::string label = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  bool sync = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  // A fill in progress keeps the process alive until its synced/syncFailed event.
  if (sync && emitter_->filling++ == 0) emitter_->tsfn.Ref(env);
  uint64_t id = sync ? set_->AddAndSync(s->source(), label) : set_->AddLive(s->source(), label);
  return FromU64(env, id);
}

Napi::Value ReplicaSetWrap::Bind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!set_) {
    ThrowState(env, "ERR_CLOSED", "replica set is closed");
    return env.Undefined();
  }
  SourceWrap* s = SourceWrap::Unwrap(info[0]);
  if (!s) {
    ThrowType(env, "bind takes a NativeSource");
    return env.Undefined();
  }
  s->Adopt(set_);
  return env.Undefined();
}

Napi::Value ReplicaSetWrap::Replicas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env);
  if (!set_) return a;
  uint32_t i = 0;
  for (auto& r : set_->Replicas()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", FromU64(env, r.id));
    o.Set("label", r.label);
    o.Set("state", StateName(r.state));
    if (r.lostErrno) o.Set("code", ErrnoName(r.lostErrno));
    a.Set(i++, o);
  }
  return a;
}

Napi::Value ReplicaSetWrap::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("closed", !set_);
  if (set_) {
    o.Set("storedPages", FromU64(env, set_->StoredPages()));
    o.Set("failovers", FromU64(env, set_->Failovers()));
    o.Set("syncedPages", FromU64(env, set_->SyncedPages()));
  }
  return o;
}

// write(offset, data) -> Promise: store pages through the set (tools, tests).
Napi::Value ReplicaSetWrap::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!set_) {
    ThrowState(env, "ERR_CLOSED", "replica set is closed");
    return env.Undefined();
  }
  uint64_t off;
  if (!ToU64(env, info[0], "offset", &off)) return env.Undefined();
  if (!info[1].IsTypedArray() && !info[1].IsBuffer()) {
    ThrowType(env, "data must be a Buffer or Uint8Array");
    return env.Undefined();
  }
  Napi::Uint8Array u = info[1].As<Napi::Uint8Array>();
  if (off % 4096 || u.ByteLength() % 4096 || off + u.ByteLength() > set_->Size()) {
    ThrowRange(env, "offset and length must be page aligned and inside the set");
    return env.Undefined();
  }
  auto data = std::make_shared<std::vector<uint8_t>>(u.Data(), u.Data() + u.ByteLength());
  auto set = set_;
  auto result = std::make_shared<int>(0);
  return OffThread::Start(
      env, [set, data, off, result] { *result = set->Store(off, data->data(), data->size()); },
      [result](Napi::Env env, Napi::Promise::Deferred& d, bool js) {
        if (!js) return;
        if (*result < 0)
          d.Reject(MakeSys(env, "replicas.store", -*result).Value());
        else
          d.Resolve(env.Undefined());
      });
}

// stored() -> Buffer: the map of pages ever stored (ReplicatedSource::StoredBits).
Napi::Value ReplicaSetWrap::Stored(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!set_) {
    ThrowState(env, "ERR_CLOSED", "replica set is closed");
    return env.Undefined();
  }
  std::vector<uint64_t> bits = set_->StoredBits();
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(bits.data()), bits.size() * 8);
}

// setStored(buffer): pages the replicas hold already (a handed-over region); exactly stored()'s length.
Napi::Value ReplicaSetWrap::SetStored(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!set_) {
    ThrowState(env, "ERR_CLOSED", "replica set is closed");
    return env.Undefined();
  }
  if (!info[0].IsTypedArray()) {
    ThrowType(env, "setStored(map) takes a Buffer or Uint8Array");
    return env.Undefined();
  }
  Napi::Uint8Array u = info[0].As<Napi::Uint8Array>();
  if (u.ByteLength() != (set_->Size() / 4096 + 63) / 64 * 8) {
    ThrowRange(env, "the stored-page map must have one bit per page of the set, in 64-bit words");
    return env.Undefined();
  }
  set_->SetStored(u.Data(), u.ByteLength());
  return env.Undefined();
}

Napi::Value ReplicaSetWrap::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  return info.Env().Undefined();
}

}  // namespace sos
