// A map of disjoint half-open intervals [start, end) to values, with splitting
// assign/erase. Used for registrations, holes and protections of mappings.
#pragma once
#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

namespace sos {

template <typename T>
class IntervalMap {
 public:
  struct Entry {
    uint64_t start, end;
    T value;
  };

  // Remove [start, end), splitting intervals that straddle the edges.
  void Erase(uint64_t start, uint64_t end) {
    if (start >= end) return;
    auto it = map_.lower_bound(start);
    if (it != map_.begin()) {
      auto prev = std::prev(it);
      if (prev->second.end > start) it = prev;
    }
    while (it != map_.end() && it->first < end) {
      Entry e = it->second;
      it = map_.erase(it);
      if (e.start < start) map_[e.start] = Entry{e.start, start, e.value};
      if (e.end > end) map_[end] = Entry{end, e.end, e.value};
    }
  }

  void Assign(uint64_t start, uint64_t end, const T& value) {
    if (start >= end) return;
    Erase(start, end);
    map_[start] = Entry{start, end, value};
  }

  // The interval holding addr, or nullptr.
  const Entry* Find(uint64_t addr) const {
    auto it = map_.upper_bound(addr);
    if (it == map_.begin()) return nullptr;
    --it;
    return addr < it->second.end ? &it->second : nullptr;
  }

  // All intervals overlapping [start, end), clipped to it.
  std::vector<Entry> Overlapping(uint64_t start, uint64_t end) const {
    std::vector<Entry> out;
    auto it = map_.lower_bound(start);
    if (it != map_.begin() && std::prev(it)->second.end > start) --it;
    for (; it != map_.end() && it->first < end; ++it) {
      Entry e = it->second;
      if (e.start < start) e.start = start;
      if (e.end > end) e.end = end;
      out.push_back(e);
    }
    return out;
  }

  // True when [start, end) is fully covered by intervals.
  bool Covers(uint64_t start, uint64_t end) const {
    uint64_t at = start;
    for (const auto& e : Overlapping(start, end)) {
      if (e.start > at) return false;
      at = e.end;
    }
    return at >= end;
  }

  // Move the intervals inside [start, end) by delta (mremap).
  void Shift(uint64_t start, uint64_t end, int64_t delta) {
    auto moved = Overlapping(start, end);
    Erase(start, end);
    for (auto& e : moved) Assign(e.start + delta, e.end + delta, e.value);
  }

  bool Empty() const { return map_.empty(); }
  void Clear() { map_.clear(); }
  std::vector<Entry> All() const {
    std::vector<Entry> out;
    for (auto& kv : map_) out.push_back(kv.second);
    return out;
  }

 private:
  std::map<uint64_t, Entry> map_;
};

}  // namespace sos
