#include "uffd/engine.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>

#include "core/fd_events.h"
#include "core/offthread.h"
#include "uffd/uffd.h"
#include "uffd/uffd_abi.h"

namespace sos {

// ---- histogram ----
int Histogram::Index(uint64_t ns) {
  if (ns < 16) return static_cast<int>(ns);
  int msb = 63 - __builtin_clzll(ns);
  return 16 + (msb - 4) * kSub + static_cast<int>((ns >> (msb - 3)) & (kSub - 1));
}
uint64_t Histogram::Lower(int idx) {
  if (idx < 16) return static_cast<uint64_t>(idx);
  int k = idx - 16, msb = k / kSub + 4, sub = k % kSub;
  return (1ULL << msb) + static_cast<uint64_t>(sub) * (1ULL << (msb - 3));
}
void Histogram::Record(uint64_t ns) {
  buckets_[Index(ns)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(ns, std::memory_order_relaxed);
  uint64_t m = max_.load(std::memory_order_relaxed);
  while (ns > m && !max_.compare_exchange_weak(m, ns, std::memory_order_relaxed)) {}
}
uint64_t Histogram::Percentile(double p) const {
  uint64_t total = Count();
  if (!total) return 0;
  uint64_t want = static_cast<uint64_t>(p * static_cast<double>(total) + 0.5), seen = 0;
  if (want < 1) want = 1;
  for (int i = 0; i < kBuckets; i++) {
    seen += buckets_[i].load(std::memory_order_relaxed);
    if (seen >= want) {
      uint64_t lo = Lower(i), hi = i + 1 < kBuckets ? Lower(i + 1) : lo;
      return std::min(lo + (hi - lo) / 2, Max());
    }
  }
  return Max();
}
void Histogram::Reset() {
  for (auto& b : buckets_) b.store(0);
  count_ = 0;
  sum_ = 0;
  max_ = 0;
}

// { count, meanNs, p50Ns, p90Ns, p99Ns, maxNs, buckets }: the non-empty
// buckets as [lowerBoundNs, count] pairs (8 per power of two).
Napi::Object LatencyToJs(Napi::Env env, const Histogram& h) {
  Napi::Object l = Napi::Object::New(env);
  uint64_t c = h.Count();
  l.Set("count", Napi::Number::New(env, static_cast<double>(c)));
  l.Set("meanNs", Napi::Number::New(env, c ? static_cast<double>(h.Sum()) / static_cast<double>(c) : 0));
  l.Set("p50Ns", Napi::Number::New(env, static_cast<double>(h.Percentile(0.50))));
  l.Set("p90Ns", Napi::Number::New(env, static_cast<double>(h.Percentile(0.90))));
  l.Set("p99Ns", Napi::Number::New(env, static_cast<double>(h.Percentile(0.99))));
  l.Set("maxNs", Napi::Number::New(env, static_cast<double>(h.Max())));
  Napi::Array buckets = Napi::Array::New(env);
  for (int i = 0, n = 0; i < Histogram::kBuckets; i++) {
    uint64_t count = h.Bucket(i);
    if (!count) continue;
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::Number::New(env, static_cast<double>(Histogram::Lower(i))));
    pair.Set(1u, Napi::Number::New(env, static_cast<double>(count)));
    buckets.Set(n++, pair);
  }
  l.Set("buckets", buckets);
  return l;
}

static uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// ---- engine ----
Napi::Function EngineWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativeEngine",
                     {
                         InstanceMethod("serve", &EngineWrap::Serve),
                         InstanceMethod("unserve", &EngineWrap::Unserve),
                         InstanceMethod("start", &EngineWrap::Start),
                         InstanceMethod("stop", &EngineWrap::Stop),
                         InstanceMethod("stats", &EngineWrap::Stats),
                         InstanceMethod("resetStats", &EngineWrap::ResetStats),
                         InstanceMethod("close", &EngineWrap::Close),
                         InstanceMethod("running", &EngineWrap::Running),
                     });
}

// new NativeEngine(uffd, { threads, batchPages })
EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  UffdWrap* u = UffdWrap::Unwrap(info[0]);
  if (!u) {
    ThrowType(env, "first argument must be a userfaultfd");
    return;
  }
  if (!u->core()) {
    ThrowState(env, "ERR_CLOSED", "userfaultfd is closed");
    return;
  }
  if (info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    uint64_t v;
    if (!o.Get("threads").IsUndefined()) {
      if (!ToU64(env, o.Get("threads"), "threads", &v)) return;
      if (v < 1 || v > 64) {
        ThrowRange(env, "threads must be between 1 and 64");
        return;
      }
      threads_ = static_cast<int>(v);
    }
    if (!o.Get("spinMicros").IsUndefined()) {
      if (!ToU64(env, o.Get("spinMicros"), "spinMicros", &v)) return;
      if (v > 10000) {
        ThrowRange(env, "spinMicros must be at most 10000");
        return;
      }
      spinNs_ = v * 1000;
    }
    if (!o.Get("batchPages").IsUndefined()) {
      if (!ToU64(env, o.Get("batchPages"), "batchPages", &v)) return;
      if (v < 1 || v > 512) {
        ThrowRange(env, "batchPages must be between 1 and 512");
        return;
      }
      batchPages_ = v;
    }
  }
  uffd_ = u;
  core_ = u->core();
  uffdRef_ = Napi::Persistent(info[0].As<Napi::Object>());
  zero_ = std::make_shared<ZeroSource>();
  Track(env, this);
}

EngineWrap::~EngineWrap() {
  // Only reached when not running (a running engine holds a reference to
  // itself). Leave the env's registry so teardown never sees a freed engine.
  running_ = false;
  JoinThreads();
  if (!closed_) Untrack(Napi::Env(env_), this);
  closed_ = true;
}

// serve(address, length, source, sourceOffset, pageSize)
Napi::Value EngineWrap::Serve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) {
    ThrowState(env, "ERR_CLOSED", "fault engine is closed");
    return env.Undefined();
  }
  uint64_t addr, len, soff = 0, ps = static_cast<uint64_t>(PageSize());
  if (!ToU64(env, info[0], "address", &addr) || !ToU64(env, info[1], "length", &len)) return env.Undefined();
  SourceWrap* s = SourceWrap::Unwrap(info[2]);
  if (!s || !s->source()) {
    ThrowType(env, "source must be an open PageSource");
    return env.Undefined();
  }
  if (!info[3].IsUndefined() && !ToU64(env, info[3], "sourceOffset", &soff)) return env.Undefined();
  if (!info[4].IsUndefined() && !ToU64(env, info[4], "pageSize", &ps)) return env.Undefined();
  if (ps < 4096 || (ps & (ps - 1))) {
    ThrowRange(env, "pageSize must be a power of two of at least 4096");
    return env.Undefined();
  }
  if (addr % ps || len % ps || soff % ps || len == 0 || addr + len < addr) {
    ThrowRange(env, "address, length and sourceOffset must be aligned to the page size, length positive");
    return env.Undefined();
  }
  std::unique_lock<std::shared_mutex> lock(tableMu_);
  table_.Assign(addr, addr + len, Served{s->source(), static_cast<int64_t>(soff) - static_cast<int64_t>(addr), ps});
  return env.Undefined();
}

Napi::Value EngineWrap::Unserve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t addr, len;
  if (!ToU64(env, info[0], "address", &addr) || !ToU64(env, info[1], "length", &len)) return env.Undefined();
  std::unique_lock<std::shared_mutex> lock(tableMu_);
  table_.Erase(addr, addr + len);
  return env.Undefined();
}

// start(onEvent(event)): events the engine does not resolve itself (fork,
// remap, remove, unmap, unserved faults, errors) go to onEvent.
Napi::Value EngineWrap::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) {
    ThrowState(env, "ERR_CLOSED", "fault engine is closed");
    return env.Undefined();
  }
  if (running_) {
    ThrowState(env, "ERR_RUNNING", "fault engine is already running");
    return env.Undefined();
  }
  if (!info[0].IsFunction()) {
    ThrowType(env, "onEvent must be a function");
    return env.Undefined();
  }
  if (!uffd_ || !uffd_->core() || !uffd_->core()->apiDone) {
    ThrowState(env, uffd_ && uffd_->core() ? "ERR_NO_API" : "ERR_CLOSED",
               "the userfaultfd must be open and past its api() handshake");
    return env.Undefined();
  }
  fd_ = core_->fd;
  // Engine threads must never block in read(): several may race for a message.
  if (!SetNonBlocking(env, fd_)) return env.Undefined();
  stopFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stopFd_ < 0) {
    ThrowSys(env, "eventfd", errno);
    return env.Undefined();
  }
  if (!uffd_->AttachEngine(env, this)) {
    close(stopFd_);
    stopFd_ = -1;
    return env.Undefined();
  }
  tsfn_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "sos:fault-engine", 0, 1);
  tsfn_.Unref(env);  // a running engine does not by itself keep the process alive
  tsfnLive_ = true;
  running_ = true;
  Ref();  // stay alive while threads run, even if JS drops us
  for (int i = 0; i < threads_; i++) workers_.emplace_back(&EngineWrap::Run, this, i);
  return env.Undefined();
}

void EngineWrap::JoinThreads() {
  if (stopFd_ >= 0) {
    uint64_t one = 1;
    ssize_t w = write(stopFd_, &one, sizeof(one));
    (void)w;
  }
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
  if (stopFd_ >= 0) close(stopFd_);
  stopFd_ = -1;
}

// Stop threads (they finish the fault in hand) and hand reading back to the
// userfaultfd's JS side (unless it is closing).
void EngineWrap::StopThreads(bool restartEvents) {
  bool wasRunning = running_.exchange(false);
  JoinThreads();
  if (tsfnLive_) {
    tsfn_.Release();
    tsfnLive_ = false;
  }
  if (uffd_) uffd_->DetachEngine(this, restartEvents);
  if (wasRunning) Unref();
}

void EngineWrap::Finish() {
  if (closed_) return;
  closed_ = true;
  uffd_ = nullptr;
  uffdRef_.Reset();
  {
    std::unique_lock<std::shared_mutex> lock(tableMu_);
    table_.Clear();
  }
  Untrack(Napi::Env(env_), this);
}

void EngineWrap::CloseFromParent() {
  StopThreads(false);
  Finish();
}

Napi::Value EngineWrap::Stop(const Napi::CallbackInfo& info) {
  StopThreads(true);
  return Stats(info);
}

Napi::Value EngineWrap::Close(const Napi::CallbackInfo& info) {
  StopThreads(true);
  Finish();
  return info.Env().Undefined();
}

Napi::Value EngineWrap::Running(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), running_.load());
}

Napi::Value EngineWrap::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  auto n = [&](const char* k, uint64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
  n("faults", stats_.faults);
  n("pages", stats_.pages);
  n("bytes", stats_.bytes);
  n("zeroPages", stats_.zeroPages);
  n("wpFaults", stats_.wpFaults);
  n("minorFaults", stats_.minorFaults);
  n("exists", stats_.exists);
  n("retries", stats_.retries);
  n("dropped", stats_.dropped);
  n("unserved", stats_.unserved);
  n("errors", stats_.errors);
  n("events", stats_.events);
  n("ioctls", stats_.ioctls);
  o.Set("latency", LatencyToJs(env, stats_.latency));
  o.Set("running", running_.load());
  return o;
}

Napi::Value EngineWrap::ResetStats(const Napi::CallbackInfo& info) {
  for (auto* a : {&stats_.faults, &stats_.pages, &stats_.bytes, &stats_.zeroPages, &stats_.wpFaults,
                  &stats_.minorFaults, &stats_.exists, &stats_.retries, &stats_.dropped, &stats_.unserved,
                  &stats_.errors, &stats_.events, &stats_.ioctls})
    a->store(0);
  stats_.latency.Reset();
  return info.Env().Undefined();
}

void EngineWrap::Emit(std::function<Napi::Value(Napi::Env)> make) {
  if (!tsfnLive_) return;
  auto* data = new std::function<Napi::Value(Napi::Env)>(std::move(make));
  napi_status st =
      tsfn_.NonBlockingCall(data, [](Napi::Env env, Napi::Function cb, std::function<Napi::Value(Napi::Env)>* d) {
        if (env != nullptr && cb != nullptr && CanRunJs(env)) cb.Call({(*d)(env)});
        delete d;
      });
  if (st != napi_ok) delete data;
}

static Napi::Value ErrorEvent(Napi::Env env, const char* call, int err, uint64_t addr) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", "error");
  o.Set("error", MakeSys(env, call, err, "while serving a fault").Value());
  o.Set("address", FromU64(env, addr));
  return o;
}

// Resolve a missing fault at addr: copy the aligned window of batchPages
// around it from its source in one ioctl; pages that already exist are
// skipped, and a faulting thread whose page existed is woken.
int EngineWrap::ResolveMissing(uint64_t addr, uint8_t* buf, Served s, uint64_t rs, uint64_t re) {
  uint64_t ps = s.source ? s.pageSize : UnservedPageSize(addr);
  uint64_t page = addr & ~(ps - 1);
  bool unserved = !s.source;
  if (unserved) {
    stats_.unserved++;
    s.source = zero_;
    rs = page;
    re = page + ps;
    Emit([page](Napi::Env env) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", "unserved");
      o.Set("address", FromU64(env, page));
      return o;
    });
  }
  uint64_t win = std::max<uint64_t>(ps, (batchPages_ * 4096 + ps - 1) / ps * ps);
  uint64_t w0 = rs + (page - rs) / win * win, w1 = std::min(w0 + win, re);
  uint64_t len = w1 - w0;

  bool zero = s.source->IsZero() && ps == 4096;  // no ZEROPAGE on hugetlb
  const uint8_t* src = nullptr;
  if (!zero) {
    uint64_t soff = static_cast<uint64_t>(static_cast<int64_t>(w0) + s.delta);
    src = static_cast<const uint8_t*>(s.source->Direct(soff, len));
    if (!src || (reinterpret_cast<uint64_t>(src) & 4095)) {
      int r = s.source->Fetch(soff, buf, len);
      if (r < 0) {
        stats_.errors++;
        int err = -r;
        Emit([err, page](Napi::Env env) { return ErrorEvent(env, "source.fetch", err, page); });
        memset(buf, 0, len);  // the faulting thread must not hang: it reads zeros
      }
      src = buf;
    }
  }

  bool faultWoken = false;
  uint64_t cur = w0;
  while (cur < w1) {
    long r;
    int64_t done;
    if (zero) {
      struct uffdio_zeropage z = {};
      z.range = {cur, w1 - cur};
      r = ioctl(fd_, UFFDIO_ZEROPAGE, &z);
      done = z.zeropage;
    } else {
      struct uffdio_copy c = {};
      c.dst = cur;
      c.src = reinterpret_cast<uint64_t>(src + (cur - w0));
      c.len = w1 - cur;
      r = ioctl(fd_, UFFDIO_COPY, &c);
      done = c.copy;
    }
    stats_.ioctls++;
    uint64_t copied = done > 0 ? static_cast<uint64_t>(done) : 0;
    if (copied) {
      stats_.pages += copied / ps;
      stats_.bytes += copied;
      if (zero) stats_.zeroPages += copied / ps;
      if (page >= cur && page < cur + copied) faultWoken = true;
    }
    if (r == 0) break;
    int err = errno;
    if (err == EEXIST) {
      stats_.exists++;
      uint64_t existing = cur + copied;  // this page is already there
      if (existing == page) {
        struct uffdio_range wr = {page, ps};
        ioctl(fd_, UFFDIO_WAKE, &wr);
        stats_.ioctls++;
        faultWoken = true;
      }
      cur = existing + ps;
      continue;
    }
    if (err == EAGAIN) return faultWoken ? 0 : -EAGAIN;  // mm changing: retry after reading events
    if (err == ENOENT || err == ESRCH) {
      stats_.dropped++;  // range or process went away: nobody waits any more
      return 0;
    }
    stats_.errors++;
    Emit([err, page, zero](Napi::Env env) {
      return ErrorEvent(env, zero ? "ioctl(UFFDIO_ZEROPAGE)" : "ioctl(UFFDIO_COPY)", err, page);
    });
    if (!faultWoken) {
      struct uffdio_range wr = {page, ps};
      ioctl(fd_, UFFDIO_WAKE, &wr);
    }
    return 0;
  }
  if (!faultWoken && page >= w1) {
    // cannot happen with a window containing page; defensive wake
    struct uffdio_range wr = {page, ps};
    ioctl(fd_, UFFDIO_WAKE, &wr);
  }
  return 0;
}

void EngineWrap::Handle(const struct ::uffd_msg& m, uint8_t* buf, std::vector<struct ::uffd_msg>* retry) {
  if (m.event == UFFD_EVENT_PAGEFAULT) {
    uint64_t addr = m.arg.pagefault.address;
    uint64_t flags = m.arg.pagefault.flags;
    Served s;
    uint64_t rs = 0, re = 0;
    {
      std::shared_lock<std::shared_mutex> lock(tableMu_);
      if (const auto* e = table_.Find(addr)) {
        s = e->value;
        rs = e->start;
        re = e->end;
      }
    }
    uint64_t ps = s.source ? s.pageSize : static_cast<uint64_t>(PageSize());
    uint64_t page = addr & ~(ps - 1);
    if (flags & UFFD_PAGEFAULT_FLAG_WP) {
      // Write to a protected page: record it and let the write through.
      stats_.wpFaults++;
      if (s.source && s.source->OnWriteFault(addr)) return;
      struct uffdio_writeprotect w = {};
      w.range = {page, ps};
      w.mode = 0;
      stats_.ioctls++;
      if (ioctl(fd_, UFFDIO_WRITEPROTECT, &w) != 0) {
        int err = errno;
        if (err == EAGAIN) {
          stats_.retries++;
          retry->push_back(m);
          return;
        }
        if (err != ENOENT && err != ESRCH) {
          stats_.errors++;
          Emit([err, page](Napi::Env env) { return ErrorEvent(env, "ioctl(UFFDIO_WRITEPROTECT)", err, page); });
        }
      }
      return;
    }
    if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
      // The page cache already holds the page: just map it.
      stats_.minorFaults++;
      struct uffdio_continue c = {};
      c.range = {page, ps};
      stats_.ioctls++;
      if (ioctl(fd_, UFFDIO_CONTINUE, &c) != 0) {
        int err = errno;
        if (err == EEXIST) {
          struct uffdio_range wr = {page, ps};
          ioctl(fd_, UFFDIO_WAKE, &wr);
        } else if (err == EAGAIN) {
          stats_.retries++;
          retry->push_back(m);
          return;
        } else if (err != ENOENT && err != ESRCH) {
          stats_.errors++;
          Emit([err, page](Napi::Env env) { return ErrorEvent(env, "ioctl(UFFDIO_CONTINUE)", err, page); });
        }
      } else {
        stats_.pages++;
        stats_.bytes += ps;
      }
      return;
    }
    if (s.source) {
      int r = s.source->ResolveFault(addr, buf, BufLen(), (flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0);
      if (r == -EAGAIN) {
        stats_.retries++;
        retry->push_back(m);
      }
      if (r != -ENOSYS) return;
    }
    if (ResolveMissing(addr, buf, std::move(s), rs, re) == -EAGAIN) {
      stats_.retries++;
      retry->push_back(m);
    }
    return;
  }

  // Non-cooperative events: the table was updated right after the read
  // (ApplyEvent, in kernel order); tell JS.
  stats_.events++;
  struct ::uffd_msg copy = m;
  Emit([copy](Napi::Env env) { return EventToJs(env, copy); });
}

// Keep the serving table in step with a REMAP/UNMAP/REMOVE. Called under
// readMu_ with the read that returned it, so with several threads events
// still apply in the order the kernel sent them (a REMAP before the UNMAP of
// the old range it causes).
void EngineWrap::ApplyEvent(const struct ::uffd_msg& m) {
  if (m.event == UFFD_EVENT_REMAP) {
    uint64_t from = m.arg.remap.from, to = m.arg.remap.to, len = m.arg.remap.len;
    std::unique_lock<std::shared_mutex> lock(tableMu_);
    auto moved = table_.Overlapping(from, from + len);
    table_.Erase(from, from + len);
    int64_t d = static_cast<int64_t>(to - from);
    for (auto& e : moved) {
      Served v = e.value;
      v.delta -= d;
      table_.Assign(e.start + d, e.end + d, v);
    }
  } else if (m.event == UFFD_EVENT_UNMAP) {
    std::unique_lock<std::shared_mutex> lock(tableMu_);
    table_.Erase(m.arg.remove.start, m.arg.remove.end);
  } else if (m.event == UFFD_EVENT_REMOVE) {
    // Discarded pages read back as zeros, as after MADV_DONTNEED on anonymous memory.
    std::unique_lock<std::shared_mutex> lock(tableMu_);
    for (auto& e : table_.Overlapping(m.arg.remove.start, m.arg.remove.end)) {
      Served v = e.value;
      v.source = zero_;
      table_.Assign(e.start, e.end, v);
    }
  }
}

// Page size for a fault in a range nobody serves: the region's own (hugetlb
// refuses a 4 KiB resolution, and the thread would fault forever), else 4 KiB.
uint64_t EngineWrap::UnservedPageSize(uint64_t addr) {
  if (!core_->ownProcess) return static_cast<uint64_t>(PageSize());
  Lock lock(RegistryMutex());
  auto m = FindMappingLocked(addr, 1);
  return m ? m->pageSize : static_cast<uint64_t>(PageSize());
}

ssize_t EngineWrap::ReadMessages(struct ::uffd_msg* msgs, size_t cap) {
  std::lock_guard<std::mutex> order(readMu_);
  ssize_t r = read(fd_, msgs, cap * sizeof(struct ::uffd_msg));
  if (r > 0) {
    size_t n = static_cast<size_t>(r) / sizeof(struct ::uffd_msg);
    for (size_t i = 0; i < n; i++)
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) ApplyEvent(msgs[i]);
  }
  return r;
}

// Read first and wait in poll() only when a read finds nothing: a fault that
// arrives while the previous one is being resolved costs no extra syscall.
// With spinNs_, keep trying the read for that long before sleeping (faults
// streaming in are then picked up without a wake-up, at the cost of a core).
void EngineWrap::Run(int) {
  size_t bufLen = BufLen();
  void* mem = mmap(nullptr, bufLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    int err = errno;
    Emit([err](Napi::Env env) { return ErrorEvent(env, "mmap", err, 0); });
    return;
  }
  uint8_t* buf = static_cast<uint8_t*>(mem);
  struct ::uffd_msg msgs[32];
  std::vector<struct ::uffd_msg> retry, again;
  bool ready = true;
  while (running_.load(std::memory_order_relaxed)) {
    ssize_t r = -1;
    errno = EAGAIN;  // no read this turn (after a poll() timeout): nothing failed
    if (ready) {
      r = ReadMessages(msgs, 32);
    } else if (spinNs_) {
      for (uint64_t until = NowNs() + spinNs_; NowNs() < until && running_.load(std::memory_order_relaxed);) {
        r = ReadMessages(msgs, 32);
        if (r > 0 || (errno != EAGAIN && errno != EINTR)) break;
      }
    }
    if (r < 0 && errno != EAGAIN && errno != EINTR) {
      int err = errno;
      Emit([err](Napi::Env env) { return ErrorEvent(env, "read(userfaultfd)", err, 0); });
      break;
    }
    if (r > 0) {
      ready = true;
      uint64_t t0 = NowNs();
      size_t n = static_cast<size_t>(r) / sizeof(struct ::uffd_msg);
      for (size_t i = 0; i < n; i++) {
        Handle(msgs[i], buf, &retry);
        if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
          stats_.faults++;
          stats_.latency.Record(NowNs() - t0);
        }
      }
      continue;
    }
    // Nothing to read: retry deferred faults (their mm may be settled now),
    // then sleep until the uffd or the stop eventfd is readable.
    if (!retry.empty()) {
      again.swap(retry);
      for (auto& m : again) Handle(m, buf, &retry);
      again.clear();
    }
    ready = false;
    struct pollfd fds[2] = {{fd_, POLLIN, 0}, {stopFd_, POLLIN, 0}};
    int pr = poll(fds, 2, retry.empty() ? -1 : 1);
    if (pr < 0 && errno != EINTR) break;
    if (fds[1].revents) break;
    if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) break;
    if (fds[0].revents & POLLIN) ready = true;
  }
  munmap(mem, bufLen);
}

}  // namespace sos
