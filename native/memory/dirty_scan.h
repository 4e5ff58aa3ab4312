// Finding written pages in bulk: PAGEMAP_SCAN (6.7) on /proc/self/pagemap
// over a range registered with userfaultfd WP + UFFD_FEATURE_WP_ASYNC. The
// distro header predates it, so the ABI is spelled out here.
#pragma once
#include <linux/types.h>
#include <sys/ioctl.h>

#include <cstdint>
#include <functional>

struct sos_page_region {
  __u64 start;
  __u64 end;
  __u64 categories;
};
struct sos_pm_scan_arg {
  __u64 size;
  __u64 flags;
  __u64 start;
  __u64 end;
  __u64 walk_end;
  __u64 vec;
  __u64 vec_len;
  __u64 max_pages;
  __u64 category_inverted;
  __u64 category_mask;
  __u64 category_anyof_mask;
  __u64 return_mask;
};
#define SOS_PAGE_IS_WRITTEN (1 << 1)
#define SOS_PAGE_IS_PRESENT (1 << 3)
#define SOS_PM_SCAN_WP_MATCHING (1 << 0)
#define SOS_PM_SCAN_CHECK_WPASYNC (1 << 1)
#define SOS_PAGEMAP_SCAN _IOWR('f', 16, struct sos_pm_scan_arg)

namespace sos {

// Whether this kernel has PAGEMAP_SCAN (probed once).
bool PagemapScanSupported();

// Reports the pages of [start, end) written since the last scan and
// write-protects them again in the same walk (PM_SCAN_WP_MATCHING): a write
// racing the scan is either reported now or protected and reported next time.
class WrittenScanner {
 public:
  WrittenScanner();
  ~WrittenScanner();
  bool ok() const { return fd_ >= 0; }
  // Calls onRange(start, end) for each written run; 0 or a negative errno.
  int Scan(uint64_t start, uint64_t end, const std::function<void(uint64_t, uint64_t)>& onRange);

 private:
  int fd_ = -1;
  sos_page_region vec_[256];
};

// 64-bit keyed hash of one 4 KiB page (4 lanes of multiply-rotate rounds).
uint64_t PageHash(const void* page, uint64_t seed);

}  // namespace sos
