#include "memory/zap.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif

namespace sos {

static constexpr size_t kIovMax = 1024;  // UIO_MAXIOV

Zapper::Zapper(int advice) : advice_(advice) {
  if (advice != MADV_DONTNEED) return;
  int fd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  if (fd < 0) return;
  // Older kernels refuse DONTNEED here (EINVAL): try it on a page of our own.
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) {
    iovec v = {p, 4096};
    if (syscall(SYS_process_madvise, fd, &v, 1, MADV_DONTNEED, 0) == 4096) pidfd_ = fd;
    munmap(p, 4096);
  }
  if (pidfd_ < 0) close(fd);
}

Zapper::~Zapper() {
  if (pidfd_ >= 0) close(pidfd_);
}

void Zapper::Add(void* addr, size_t len) {
  if (!iov_.empty()) {
    iovec& b = iov_.back();
    if (static_cast<char*>(b.iov_base) + b.iov_len == addr) {
      b.iov_len += len;
      return;
    }
  }
  iov_.push_back({addr, len});
}

int Zapper::Flush() {
  int err = 0;
  size_t i = 0;
  while (pidfd_ >= 0 && i < iov_.size()) {
    size_t n = std::min(kIovMax, iov_.size() - i), want = 0;
    for (size_t k = i; k < i + n; k++) want += iov_[k].iov_len;
    long r = syscall(SYS_process_madvise, pidfd_, &iov_[i], n, MADV_DONTNEED, 0);
    if (r < 0 || static_cast<size_t>(r) != want) break;  // the rest one by one, below
    i += n;
  }
  for (; i < iov_.size(); i++)
    if (madvise(iov_[i].iov_base, iov_[i].iov_len, advice_) != 0 && !err) err = errno;
  iov_.clear();
  return err;
}

}  // namespace sos
