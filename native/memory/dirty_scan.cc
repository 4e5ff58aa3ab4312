#include "memory/dirty_scan.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace sos {

bool PagemapScanSupported() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    static char probe[4096] __attribute__((aligned(4096)));
    sos_pm_scan_arg a = {};
    a.size = sizeof(a);
    a.start = reinterpret_cast<uint64_t>(probe);
    a.end = a.start + sizeof(probe);
    a.category_mask = SOS_PAGE_IS_WRITTEN;
    a.return_mask = SOS_PAGE_IS_WRITTEN;
    ok = ioctl(fd, SOS_PAGEMAP_SCAN, &a) >= 0;  // ENOTTY on kernels without it
    close(fd);
  });
  return ok;
}

WrittenScanner::WrittenScanner() { fd_ = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC); }
WrittenScanner::~WrittenScanner() {
  if (fd_ >= 0) close(fd_);
}

int WrittenScanner::Scan(uint64_t start, uint64_t end, const std::function<void(uint64_t, uint64_t)>& onRange) {
  if (fd_ < 0) return -EBADF;
  sos_pm_scan_arg a = {};
  a.size = sizeof(a);
  a.flags = SOS_PM_SCAN_WP_MATCHING | SOS_PM_SCAN_CHECK_WPASYNC;
  a.start = start;
  a.end = end;
  a.vec = reinterpret_cast<uint64_t>(vec_);
  a.vec_len = sizeof(vec_) / sizeof(vec_[0]);
  // Present and written: holes (evicted pages) read as written too, and
  // matching them would plant uffd-wp markers all over the region.
  a.category_mask = SOS_PAGE_IS_WRITTEN | SOS_PAGE_IS_PRESENT;
  a.return_mask = SOS_PAGE_IS_WRITTEN;
  for (;;) {
    int n = ioctl(fd_, SOS_PAGEMAP_SCAN, &a);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    for (int i = 0; i < n; i++) onRange(vec_[i].start, vec_[i].end);
    // The walk stops early when the vector fills: go on from where it ended.
    if (a.walk_end >= end || a.walk_end <= a.start) return 0;
    a.start = a.walk_end;
  }
}

static inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t PageHash(const void* page, uint64_t seed) {
  constexpr uint64_t P1 = 0x9E3779B185EBCA87ULL, P2 = 0xC2B2AE3D27D4EB4FULL, P3 = 0x165667B19E3779F9ULL;
  uint64_t v[4] = {seed + P1 + P2, seed + P2, seed, seed - P1};
  const uint64_t* w = static_cast<const uint64_t*>(page);
  for (int i = 0; i < 512; i += 4)
    for (int l = 0; l < 4; l++) v[l] = Rotl(v[l] + w[i + l] * P2, 31) * P1;
  uint64_t h = Rotl(v[0], 1) + Rotl(v[1], 7) + Rotl(v[2], 12) + Rotl(v[3], 18);
  for (int l = 0; l < 4; l++) h = (h ^ (Rotl(v[l] * P2, 31) * P1)) * P1 + P3;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

}  // namespace sos
