// Replication: one page source made of several (each page on every live
// replica). Reads go to the first live replica and fail over; writes go to
// all of them in parallel. A replica that fails any call is dropped and an
// event says so; policy (JavaScript) then adds a fresh one, which is filled
// from a survivor in the background while it already receives every write.
// Other redundancy schemes (erasure coding) and per-page transforms (sealing)
// are further PageSources wrapping or replacing this one.
#pragma once
#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "uffd/page_source.h"

namespace sos {

// Runs jobs one at a time on its own thread (a replica's share of a fan-out).
class Lane {
 public:
  Lane();
  ~Lane();
  void Post(std::function<void()> job);

 private:
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

class ReplicatedSource : public PageSource {
 public:
  enum class State { kSyncing, kLive, kLost };
  struct Replica {
    uint64_t id;
    std::string label;
    std::shared_ptr<PageSource> src;
    std::atomic<State> state{State::kLive};
    int lostErrno = 0;
    std::unique_ptr<Lane> lane;
  };
  // Events for the owner (called from any thread): "lost" (id, errno) and
  // "synced" (id), "syncFailed" (id, errno).
  using OnEvent = std::function<void(const char* type, uint64_t id, int err)>;

  ReplicatedSource(uint64_t size, OnEvent onEvent);
  ~ReplicatedSource() override;
  const char* Kind() const override { return "replicated"; }
  uint64_t Size() const override { return size_; }
  int Fetch(uint64_t off, void* buf, uint64_t len) override;
  int Store(uint64_t off, const void* buf, uint64_t len) override;
  int FetchV(Io* ios, size_t n) override;
  int StoreV(Io* ios, size_t n) override;
  // Clears the pages' stored bits: they read as zeros with no round trip.
  // Their bytes stay on the memory nodes (overwritten by a later store) and
  // go with the region; a fresh replica is not sent them.
  int Discard(uint64_t off, uint64_t len) override;

  // A live replica from the start (its contents must already match).
  uint64_t AddLive(std::shared_ptr<PageSource> src, std::string label);
  // A fresh replica: copied from a live one in the background, then live.
  uint64_t AddAndSync(std::shared_ptr<PageSource> src, std::string label);
  struct Info {
    uint64_t id;
    std::string label;
    State state;
    int lostErrno;
  };
  std::vector<Info> Replicas();
  // Which pages were ever stored, one bit each (little-endian u64 words), to
  // hand a region over; SetStored takes such a map for a set over replicas
  // that already hold those pages.
  std::vector<uint64_t> StoredBits() const;
  void SetStored(const uint8_t* bits, size_t bytes);
  uint64_t StoredPages() const { return storedPages_.load(); }
  uint64_t Failovers() const { return failovers_.load(); }
  uint64_t SyncedPages() const { return syncedPages_.load(); }
  void Stop();  // ends background fills (reads and writes keep working)

 private:
  using Snapshot = std::vector<std::shared_ptr<Replica>>;
  Snapshot Current();
  void MarkLost(const std::shared_ptr<Replica>& r, int err);
  void MarkStored(uint64_t off, uint64_t len);
  bool IsStored(uint64_t page) const;
  bool Unwritten(uint64_t page) const override { return !IsStored(page); }
  std::mutex& Stripe(uint64_t page) { return stripes_[(page / kStripePages) % kStripes]; }
  // Locks the stripes covering the runs, in index order (no deadlock).
  std::vector<std::unique_lock<std::mutex>> LockStripes(const Io* ios, size_t n);
  int Fanout(Io* ios, size_t n);
  void Sync(std::shared_ptr<Replica> r);

  static constexpr uint64_t kStripePages = 256;  // 1 MiB of 4 KiB pages
  static constexpr size_t kStripes = 64;
  const uint64_t size_;
  OnEvent onEvent_;
  std::shared_mutex mu_;  // guards replicas_ (copied out for each call)
  Snapshot replicas_;
  uint64_t nextId_ = 1;
  std::mutex stripes_[kStripes];
  std::vector<std::atomic<uint64_t>> stored_;  // pages ever stored, one bit each
  std::atomic<uint64_t> storedPages_{0}, failovers_{0}, syncedPages_{0};
  std::atomic<bool> stopping_{false};
  std::mutex syncMu_;
  std::vector<std::thread> syncs_;
};

// JS: new NativeReplicaSet(size, onEvent(type, id, errno)); add(source,
// label, sync) -> id; bind(nativeSource) makes that handle serve from the
// set; replicas(); stats(); close().
class ReplicaSetWrap : public Napi::ObjectWrap<ReplicaSetWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ReplicaSetWrap(const Napi::CallbackInfo& info);
  ~ReplicaSetWrap() override;

 private:
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value Bind(const Napi::CallbackInfo& info);
  Napi::Value Replicas(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Stored(const Napi::CallbackInfo& info);
  Napi::Value SetStored(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Shutdown();
  std::shared_ptr<ReplicatedSource> set_;
  std::shared_ptr<struct ReplicaEmitter> emitter_;
};

}  // namespace sos
