#include "memory/store.h"

#include <sys/mman.h>

#include <climits>

#include "memory/crypto.h"

namespace sos::mem {

Store::~Store() {
  for (auto& [id, r] : regions_) munmap(r.base, r.pages * kPage);
}

Status Store::Alloc(const std::string& app, uint64_t pages, int64_t expiresMs, uint64_t* id) {
  if (pages == 0 || pages > (UINT64_MAX / kPage)) return S_RANGE;
  if (pages > capacity_ - reserved_) return S_FULL;
  void* p = mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return S_FULL;
  uint64_t rid = 0;
  while (rid == 0 || regions_.count(rid)) RandomBytes(&rid, sizeof rid);  // unguessable, never reused in practice
  Region r;
  r.id = rid;
  r.app = app;
  r.base = static_cast<uint8_t*>(p);
  r.pages = pages;
  r.written.assign((pages + 63) / 64, 0);
  r.expiresMs = expiresMs;
  regions_.emplace(rid, std::move(r));
  reserved_ += pages;
  Counters& c = apps_[app];
  c.reservedPages += pages;
  c.regions++;
  total_.reservedPages += pages;
  total_.regions++;
  *id = rid;
  return S_OK;
}

Region* Store::Find(const std::string& app, uint64_t id) {
  auto it = regions_.find(id);
  if (it == regions_.end() || it->second.app != app) return nullptr;
  return &it->second;
}

void Store::Drop(std::unordered_map<uint64_t, Region>::iterator it) {
  Region& r = it->second;
  if (onDrop_) onDrop_(r.id);
  munmap(r.base, r.pages * kPage);
  reserved_ -= r.pages;
  uint64_t held = 0;
  for (uint64_t w : r.written) held += __builtin_popcountll(w);
  Counters& c = apps_[r.app];
  c.reservedPages -= r.pages;
  c.heldPages -= held;
  c.regions--;
  total_.reservedPages -= r.pages;
  total_.heldPages -= held;
  total_.regions--;
  regions_.erase(it);
}

Status Store::Free(const std::string& app, uint64_t id) {
  auto it = regions_.find(id);
  if (it == regions_.end() || it->second.app != app) return S_NO_REGION;
  Drop(it);
  return S_OK;
}

void Store::FreeAll(const std::string& app) {
  for (auto it = regions_.begin(); it != regions_.end();) {
    auto next = std::next(it);
    if (it->second.app == app) Drop(it);
    it = next;
  }
}

void Store::MarkWritten(Region* r, uint64_t first, uint64_t count) {
  uint64_t fresh = 0;
  for (uint64_t p = first; p < first + count; p++) {
    uint64_t& w = r->written[p / 64];
    uint64_t bit = 1ULL << (p % 64);
    if (!(w & bit)) {
      w |= bit;
      fresh++;
    }
  }
  apps_[r->app].heldPages += fresh;
  total_.heldPages += fresh;
}

size_t Store::Expire(int64_t nowMs) {
  size_t n = 0;
  for (auto it = regions_.begin(); it != regions_.end();) {
    auto next = std::next(it);
    if (it->second.expiresMs <= nowMs) {
      Drop(it);
      n++;
    }
    it = next;
  }
  return n;
}

int64_t Store::NextExpiry() const {
  int64_t t = INT64_MAX;
  for (auto& [id, r] : regions_) t = std::min(t, r.expiresMs);
  return t;
}

}  // namespace sos::mem
