// Memory owned by the addon: anonymous or fd-backed mappings that JavaScript
// sees as ArrayBuffers without copying, and the registry that lets the
// userfaultfd layer refuse what would crash or deadlock.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "core/common.h"
#include "uffd/interval_map.h"

namespace sos {

struct Mapping;

// One ArrayBuffer over a mapping. It keeps the mapping alive until detached
// or collected, so a buffer that outlives its Region object stays valid.
struct ViewHold {
  std::shared_ptr<Mapping> mapping;
  napi_env env = nullptr;
  napi_ref ab = nullptr;  // weak
};

struct Mapping {
  uint64_t id = 0;
  std::string kind;  // "anonymous" | "memfd" | "file"
  int ownedFd = -1;  // memfd created (and closed) by us
  bool shared = false;
  bool hugetlb = false;
  uint64_t pageSize = 4096;
  // Guarded by RegistryMutex():
  uint8_t* base = nullptr;
  uint64_t size = 0;
  IntervalMap<char> holes;      // [start,end) offsets we unmapped
  IntervalMap<int> restricted;  // offsets whose protection is not read+write
  std::set<ViewHold*> views;    // live ArrayBuffers over this mapping
  int handles = 0;              // Region objects (any thread) open on it
  bool busy = false;            // an async unmap/remap is in flight
  std::atomic<int> pins{0};     // page sources, touch runs: memory must not move

  ~Mapping();
  uint64_t Addr() const { return reinterpret_cast<uint64_t>(base); }
};

// One lock for all mapping and registration bookkeeping (never taken on the
// fault hot path). Recursive: dropping the last reference to a mapping under
// it runs the mapping's destructor, which takes it again.
std::recursive_mutex& RegistryMutex();
using Lock = std::lock_guard<std::recursive_mutex>;

// Detach a view (lock held, on the view's env thread).
void DetachViewLocked(ViewHold* v);
// Detach every view of m in env; false (and nothing detached) when a view
// lives in another env.
bool DetachViewsLocked(Mapping* m, napi_env env);
// Find the live mapping containing [addr, addr+len) (caller holds the mutex).
std::shared_ptr<Mapping> FindMappingLocked(uint64_t addr, uint64_t len);
std::shared_ptr<Mapping> FindMappingById(uint64_t id);
// The mapping behind a Region for native threads to load and store in
// [off, off+len) (len kWholeRegion: to its end). nullptr, with a typed error
// thrown, when v is not an open Region, it is being unmapped or moved, the
// range is outside it, or part of it is unmapped or protected (an access
// there would crash the process).
constexpr uint64_t kWholeRegion = UINT64_MAX;
std::shared_ptr<Mapping> AccessibleMapping(Napi::Env env, const Napi::Value& v, uint64_t off, uint64_t len);

// RAII pin: while held, the mapping cannot be unmapped or moved.
class Pin {
 public:
  explicit Pin(std::shared_ptr<Mapping> m) : m_(std::move(m)) {
    if (m_) m_->pins++;
  }
  ~Pin() {
    if (m_) m_->pins--;
  }
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  Mapping* get() const { return m_.get(); }
  const std::shared_ptr<Mapping>& shared() const { return m_; }

 private:
  std::shared_ptr<Mapping> m_;
};

class RegionWrap : public Napi::ObjectWrap<RegionWrap>, public Closable {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit RegionWrap(const Napi::CallbackInfo& info);
  ~RegionWrap() override;

  int CloseRank() const override { return 30; }
  void CloseForTeardown() override { DoClose(true); }

  std::shared_ptr<Mapping> mapping() const { return mapping_; }
  napi_env envOf() const { return env_; }
  static RegionWrap* Unwrap(Napi::Value v);

 private:
  Napi::Value Buffer(const Napi::CallbackInfo& info);
  Napi::Value Address(const Napi::CallbackInfo& info);
  Napi::Value Size(const Napi::CallbackInfo& info);
  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Mprotect(const Napi::CallbackInfo& info);
  Napi::Value Madvise(const Napi::CallbackInfo& info);
  Napi::Value Unmap(const Napi::CallbackInfo& info);
  Napi::Value Remap(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsClosed(const Napi::CallbackInfo& info);

  bool Live(Napi::Env env);
  void DoClose(bool teardown);
  bool CheckRange(Napi::Env env, const Napi::Value& off, const Napi::Value& len, uint64_t* o, uint64_t* l);

  napi_env env_;
  std::shared_ptr<Mapping> mapping_;
  ViewHold* view_ = nullptr;  // may dangle once collected: check views set
};

}  // namespace sos
