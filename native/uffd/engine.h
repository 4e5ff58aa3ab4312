// The fault engine: C++ threads that read a userfaultfd and resolve faults
// from page sources, so that a fault never crosses into JavaScript.
#pragma once
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "core/common.h"
#include "uffd/interval_map.h"
#include "uffd/page_source.h"
#include "uffd/uffd_abi.h"
#include "uffd/uffd_core.h"

namespace sos {

class UffdWrap;

// Latency histogram: 8 linear sub-buckets per power of two of nanoseconds.
class Histogram {
 public:
  static constexpr int kSub = 8;
  static constexpr int kBuckets = 64 * kSub;
  void Record(uint64_t ns);
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  uint64_t Percentile(double p) const;
  uint64_t Max() const { return max_.load(std::memory_order_relaxed); }
  uint64_t Sum() const { return sum_.load(std::memory_order_relaxed); }
  void Reset();
  uint64_t Bucket(int idx) const { return buckets_[idx].load(std::memory_order_relaxed); }
  static uint64_t Lower(int idx);

 private:
  static int Index(uint64_t ns);
  std::atomic<uint64_t> buckets_[kBuckets] = {};
  std::atomic<uint64_t> count_{0}, sum_{0}, max_{0};
};

// A histogram as JS: { count, meanNs, p50Ns, p90Ns, p99Ns, maxNs, buckets }.
Napi::Object LatencyToJs(Napi::Env env, const Histogram& h);

struct EngineStats {
  std::atomic<uint64_t> faults{0}, pages{0}, bytes{0}, zeroPages{0}, wpFaults{0}, minorFaults{0}, exists{0}, retries{0},
      dropped{0}, unserved{0}, errors{0}, events{0}, ioctls{0};
  Histogram latency;  // from reading the fault to its resolving ioctl returning
};

struct Served {
  std::shared_ptr<PageSource> source;
  int64_t delta = 0;  // source offset = address + delta
  uint64_t pageSize = 4096;
};

class EngineWrap : public Napi::ObjectWrap<EngineWrap>, public Closable {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit EngineWrap(const Napi::CallbackInfo& info);
  ~EngineWrap() override;

  int CloseRank() const override { return 10; }
  void CloseForTeardown() override { CloseFromParent(); }
  void CloseFromParent();

 private:
  Napi::Value Serve(const Napi::CallbackInfo& info);
  Napi::Value Unserve(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value ResetStats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Running(const Napi::CallbackInfo& info);

  void Run(int index);
  void Handle(const struct ::uffd_msg& m, uint8_t* buf, std::vector<struct ::uffd_msg>* retry);
  // 0 done, -EAGAIN retry later, other negative errno failed
  int ResolveMissing(uint64_t addr, uint8_t* buf, Served s, uint64_t rs, uint64_t re);
  void Emit(std::function<Napi::Value(Napi::Env)> make);
  void ApplyEvent(const struct ::uffd_msg& m);
  ssize_t ReadMessages(struct ::uffd_msg* msgs, size_t cap);
  uint64_t UnservedPageSize(uint64_t addr);
  size_t BufLen() const { return std::max<size_t>(batchPages_ * 4096, 2u << 20); }  // scratch per thread
  void JoinThreads();
  void StopThreads(bool restartEvents);
  void Finish();

  napi_env env_;
  UffdWrap* uffd_ = nullptr;
  std::shared_ptr<UffdCore> core_;
  Napi::ObjectReference uffdRef_;  // the parent stays alive while we exist
  int fd_ = -1;
  int stopFd_ = -1;  // eventfd that wakes the threads to exit
  int threads_ = 1;
  uint64_t batchPages_ = 16;
  uint64_t spinNs_ = 0;
  bool wpUnprotect_ = true;
  std::vector<std::thread> workers_;
  std::atomic<bool> running_{false};
  bool closed_ = false;
  Napi::ThreadSafeFunction tsfn_;
  bool tsfnLive_ = false;
  std::shared_mutex tableMu_;
  std::mutex readMu_;  // read + apply non-fault events, in kernel order
  IntervalMap<Served> table_;
  std::shared_ptr<PageSource> zero_;
  EngineStats stats_;
};

}  // namespace sos
