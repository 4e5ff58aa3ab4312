// touch(region, offset, length, { threads, write }): native threads that
// fault pages in, timing each first touch. Raises real faults from threads
// that are not the JS thread (tests, benchmarks, warm-up of a region).
#include <napi.h>

#include <chrono>
#include <thread>
#include <vector>

#include "common.h"
#include "engine.h"
#include "mapping.h"

namespace sos {

namespace {

uint64_t Now() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

class TouchWorker : public Napi::AsyncWorker {
 public:
  TouchWorker(Napi::Env env, std::shared_ptr<Mapping> m, uint64_t off, uint64_t len, int threads, bool write,
              uint64_t stride)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), pin_(std::move(m)), off_(off),
        len_(len), threads_(threads), write_(write), stride_(stride) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    uint8_t* base = pin_.get()->base + off_;
    uint64_t pages = len_ / stride_;
    uint64_t t0 = Now();
    std::vector<std::thread> ts;
    std::vector<uint64_t> sums(threads_, 0);
    for (int t = 0; t < threads_; t++) {
      ts.emplace_back([&, t] {
        uint64_t lo = pages * t / threads_, hi = pages * (t + 1) / threads_, sum = 0;
        for (uint64_t p = lo; p < hi; p++) {
          volatile uint8_t* a = base + p * stride_;
          uint64_t s = Now();
          if (write_) *a = static_cast<uint8_t>(p);
          else sum += *a;
          hist_.Record(Now() - s);
        }
        sums[t] = sum;
      });
    }
    for (auto& t : ts) t.join();
    elapsed_ = Now() - t0;
    for (auto s : sums) sum_ += s;
    touched_ = pages;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("pages", Napi::Number::New(env, static_cast<double>(touched_)));
    o.Set("elapsedNs", Napi::Number::New(env, static_cast<double>(elapsed_)));
    o.Set("byteSum", Napi::Number::New(env, static_cast<double>(sum_)));
    Napi::Object l = Napi::Object::New(env);
    l.Set("p50Ns", Napi::Number::New(env, static_cast<double>(hist_.Percentile(0.5))));
    l.Set("p90Ns", Napi::Number::New(env, static_cast<double>(hist_.Percentile(0.9))));
    l.Set("p99Ns", Napi::Number::New(env, static_cast<double>(hist_.Percentile(0.99))));
    l.Set("maxNs", Napi::Number::New(env, static_cast<double>(hist_.Max())));
    l.Set("meanNs", Napi::Number::New(env, touched_ ? static_cast<double>(hist_.Sum()) / touched_ : 0));
    o.Set("latency", l);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Pin pin_;
  uint64_t off_, len_;
  int threads_;
  bool write_;
  uint64_t stride_;
  Histogram hist_;
  uint64_t elapsed_ = 0, sum_ = 0, touched_ = 0;
};

}  // namespace

Napi::Value Touch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RegionWrap* r = RegionWrap::Unwrap(info[0]);
  if (!r) {
    ThrowType(env, "first argument must be a Region");
    return env.Undefined();
  }
  auto m = r->mapping();
  if (!m) {
    ThrowState(env, "ERR_CLOSED", "region is closed");
    return env.Undefined();
  }
  uint64_t off, len, threads = 1, stride = static_cast<uint64_t>(PageSize());
  if (!ToU64(env, info[1], "offset", &off) || !ToU64(env, info[2], "length", &len)) return env.Undefined();
  bool write = false;
  if (info[3].IsObject()) {
    Napi::Object o = info[3].As<Napi::Object>();
    if (!o.Get("threads").IsUndefined() && !ToU64(env, o.Get("threads"), "threads", &threads)) return env.Undefined();
    if (!o.Get("stride").IsUndefined() && !ToU64(env, o.Get("stride"), "stride", &stride)) return env.Undefined();
    write = o.Get("write").ToBoolean();
  }
  if (threads < 1 || threads > 256) {
    ThrowRange(env, "threads must be between 1 and 256");
    return env.Undefined();
  }
  if (stride == 0) {
    ThrowRange(env, "stride must be positive");
    return env.Undefined();
  }
  {
    Lock lock(RegistryMutex());
    if (m->busy) {
      ThrowState(env, "ERR_BUSY", "region is being unmapped or moved");
      return env.Undefined();
    }
    if (off > m->size || len > m->size - off) {
      ThrowRange(env, "range is outside the region");
      return env.Undefined();
    }
    if (!m->holes.Overlapping(off, off + len).empty() || !m->restricted.Overlapping(off, off + len).empty()) {
      ThrowState(env, "ERR_PROTECTED", "range has unmapped or protected pages: touching them would crash");
      return env.Undefined();
    }
  }
  auto* w = new TouchWorker(env, m, off, len, static_cast<int>(threads), write, stride);
  auto p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace sos
