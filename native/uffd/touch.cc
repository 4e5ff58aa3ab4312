// touch(region, offset, length, { threads, write }): native threads that
// fault pages in, timing each first touch. Raises real faults from threads
// that are not the JS thread (tests, benchmarks, warm-up of a region).
#include <napi.h>

#include <chrono>
#include <thread>
#include <vector>

#include "core/common.h"
#include "core/offthread.h"
#include "uffd/engine.h"
#include "uffd/mapping.h"

namespace sos {

namespace {

uint64_t Now() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

struct TouchRun {
  explicit TouchRun(std::shared_ptr<Mapping> m) : pin(std::move(m)) {}
  Pin pin;
  uint64_t off = 0, len = 0, stride = 4096;
  int threads = 1;
  bool write = false;
  Histogram hist;
  uint64_t elapsed = 0, sum = 0, touched = 0;

  void Execute() {
    uint8_t* base = pin.get()->base + off;
    uint64_t pages = len / stride;
    uint64_t t0 = Now();
    std::vector<std::thread> ts;
    std::vector<uint64_t> sums(threads, 0);
    for (int t = 0; t < threads; t++) {
      ts.emplace_back([&, t] {
        uint64_t lo = pages * t / threads, hi = pages * (t + 1) / threads, s = 0;
        for (uint64_t p = lo; p < hi; p++) {
          volatile uint8_t* a = base + p * stride;
          uint64_t s0 = Now();
          if (write)
            *a = static_cast<uint8_t>(p);
          else
            s += *a;
          hist.Record(Now() - s0);
        }
        sums[t] = s;
      });
    }
    for (auto& t : ts) t.join();
    elapsed = Now() - t0;
    for (auto s : sums) sum += s;
    touched = pages;
  }

  Napi::Object Result(Napi::Env env) const {
    Napi::Object o = Napi::Object::New(env);
    o.Set("pages", Napi::Number::New(env, static_cast<double>(touched)));
    o.Set("elapsedNs", Napi::Number::New(env, static_cast<double>(elapsed)));
    o.Set("byteSum", Napi::Number::New(env, static_cast<double>(sum)));
    Napi::Object l = Napi::Object::New(env);
    l.Set("p50Ns", Napi::Number::New(env, static_cast<double>(hist.Percentile(0.5))));
    l.Set("p90Ns", Napi::Number::New(env, static_cast<double>(hist.Percentile(0.9))));
    l.Set("p99Ns", Napi::Number::New(env, static_cast<double>(hist.Percentile(0.99))));
    l.Set("maxNs", Napi::Number::New(env, static_cast<double>(hist.Max())));
    l.Set("meanNs", Napi::Number::New(env, touched ? static_cast<double>(hist.Sum()) / touched : 0));
    o.Set("latency", l);
    return o;
  }
};

}  // namespace

Napi::Value Touch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
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
  auto m = AccessibleMapping(env, info[0], off, len);
  if (!m) return env.Undefined();
  auto run = std::make_shared<TouchRun>(m);
  run->off = off;
  run->len = len;
  run->threads = static_cast<int>(threads);
  run->write = write;
  run->stride = stride;
  return OffThread::Start(
      env, [run] { run->Execute(); },
      [run](Napi::Env env, Napi::Promise::Deferred& d, bool canRunJs) {
        if (canRunJs) d.Resolve(run->Result(env));
      });
}

}  // namespace sos
