// The memory node's pages: per application, per region one MAP_NORESERVE
// anonymous mapping of the region's full size (stable addresses, so an RDMA
// transport can register each region as its own MR), a bitmap of the pages
// ever written (the "held" counter), and a lease. Capacity is reserved at
// ALLOC, so a full node refuses there and never in the middle of a run.
// Not thread-safe: the server serializes every call under its lock.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "memory/protocol.h"

namespace sos::mem {

struct Counters {
  uint64_t reservedPages = 0, heldPages = 0, regions = 0;
  uint64_t requests = 0, bytesIn = 0, bytesOut = 0, errors = 0, authFailures = 0;
};

struct Region {
  uint64_t id = 0;
  std::string app;
  uint8_t* base = nullptr;
  uint64_t pages = 0;
  std::vector<uint64_t> written;  // one bit per page
  int64_t expiresMs = 0;
};

class Store {
 public:
  explicit Store(uint64_t capacityPages) : capacity_(capacityPages) {}
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // S_OK with *id set, S_FULL, or S_RANGE (0 pages).
  Status Alloc(const std::string& app, uint64_t pages, int64_t expiresMs, uint64_t* id);
  // The region when `app` owns it, else nullptr (another app's id is as unknown as a random one).
  Region* Find(const std::string& app, uint64_t id);
  Status Free(const std::string& app, uint64_t id);
  void FreeAll(const std::string& app);
  void MarkWritten(Region* r, uint64_t first, uint64_t count);
  // Free every region whose lease ended at or before nowMs; returns how many.
  size_t Expire(int64_t nowMs);
  int64_t NextExpiry() const;  // INT64_MAX when none
  // Called with a region's id just before its pages are unmapped (RDMA exports deregister then).
  void OnDrop(std::function<void(uint64_t)> f) { onDrop_ = std::move(f); }

  uint64_t capacity() const { return capacity_; }
  uint64_t reserved() const { return reserved_; }
  Counters& app(const std::string& name) { return apps_[name]; }
  const std::map<std::string, Counters>& apps() const { return apps_; }
  Counters& total() { return total_; }

 private:
  void Drop(std::unordered_map<uint64_t, Region>::iterator it);
  uint64_t capacity_, reserved_ = 0;
  std::unordered_map<uint64_t, Region> regions_;
  std::map<std::string, Counters> apps_;
  Counters total_;
  std::function<void(uint64_t)> onDrop_;
};

}  // namespace sos::mem
