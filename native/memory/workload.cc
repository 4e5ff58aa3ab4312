// workload(region, kind, { ops, seed, threads }): the memory benchmark's
// native workload on a region's bytes, on native threads (so faults are real
// and no JavaScript runs per access):
//   fill    every 8-byte word from a seeded generator (incompressible data)
//   update  `ops` random 8-byte read-modify-writes (atomic xor, so the
//           result is the same whatever the threads' interleaving)
//   scan    read every word in order; the checksum covers every byte
// Resolves { kind, ops, bytes, elapsedNs, checksum }.
#include <napi.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/common.h"
#include "core/offthread.h"
#include "uffd/mapping.h"

namespace sos {

namespace {

uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// splitmix64: a fast, well-mixed 64-bit sequence.
inline uint64_t Mix(uint64_t* s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct WorkloadRun {
  explicit WorkloadRun(std::shared_ptr<Mapping> m) : pin(std::move(m)) {}
  Pin pin;
  std::string kind;
  uint64_t ops = 0, seed = 1, elapsed = 0, checksum = 0, bytes = 0;
  int threads = 1;

  void Execute() {
    uint64_t* words = reinterpret_cast<uint64_t*>(pin.get()->base);
    const uint64_t n = pin.get()->size / 8;
    std::vector<uint64_t> sums(threads, 0);
    std::vector<std::thread> ts;
    uint64_t t0 = NowNs();
    for (int t = 0; t < threads; t++) {
      ts.emplace_back([&, t] {
        uint64_t lo = n * t / threads, hi = n * (t + 1) / threads, acc = 0;
        if (kind == "fill") {
          for (uint64_t i = lo; i < hi; i++) {
            uint64_t s = seed ^ (i * 0xd1342543de82ef95ULL);
            words[i] = Mix(&s);
          }
        } else if (kind == "update") {
          // Op k's word and value depend on k only, not on how ops split among threads.
          for (uint64_t k = ops * t / threads, end = ops * (t + 1) / threads; k < end; k++) {
            uint64_t s = (seed << 40) ^ k;
            uint64_t r = Mix(&s);
            __atomic_fetch_xor(&words[r % n], r | 1, __ATOMIC_RELAXED);
          }
        } else {
          for (uint64_t i = lo; i < hi; i++) acc += words[i] * (2 * i + 1);
        }
        sums[t] = acc;
      });
    }
    for (auto& th : ts) th.join();
    elapsed = NowNs() - t0;
    for (uint64_t v : sums) checksum += v;
    bytes = kind == "update" ? ops * 8 : n * 8;
    if (kind != "update") ops = n;
  }

  Napi::Object Result(Napi::Env env) const {
    Napi::Object o = Napi::Object::New(env);
    o.Set("kind", kind);
    o.Set("ops", Napi::Number::New(env, static_cast<double>(ops)));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes)));
    o.Set("elapsedNs", Napi::Number::New(env, static_cast<double>(elapsed)));
    o.Set("checksum", Napi::BigInt::New(env, checksum));
    return o;
  }
};

}  // namespace

Napi::Value Workload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string kind = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  if (kind != "fill" && kind != "update" && kind != "scan") {
    ThrowType(env, "kind must be 'fill', 'update' or 'scan'");
    return env.Undefined();
  }
  uint64_t ops = 0, seed = 1, threads = 1;
  if (info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    if (!o.Get("ops").IsUndefined() && !ToU64(env, o.Get("ops"), "ops", &ops)) return env.Undefined();
    if (!o.Get("seed").IsUndefined() && !ToU64(env, o.Get("seed"), "seed", &seed)) return env.Undefined();
    if (!o.Get("threads").IsUndefined() && !ToU64(env, o.Get("threads"), "threads", &threads)) return env.Undefined();
  }
  if (threads < 1 || threads > 64) {
    ThrowRange(env, "threads must be between 1 and 64");
    return env.Undefined();
  }
  auto m = AccessibleMapping(env, info[0], 0, kWholeRegion);
  if (!m) return env.Undefined();
  auto run = std::make_shared<WorkloadRun>(m);
  run->kind = kind;
  run->ops = ops;
  run->seed = seed;
  run->threads = static_cast<int>(threads);
  return OffThread::Start(
      env, [run] { run->Execute(); },
      [run](Napi::Env env, Napi::Promise::Deferred& d, bool canRunJs) {
        if (canRunJs) d.Resolve(run->Result(env));
      });
}

}  // namespace sos
