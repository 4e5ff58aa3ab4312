// A byte buffer for frames on their way out. Unlike vector<uint8_t>, growing
// it does not zero the bytes that encryption is about to overwrite (that
// memset was a tenth of a memory node's CPU), and clear() keeps the storage,
// so a connection's send path stops allocating (and page-faulting) a fresh
// megabyte per batch.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace sos::mem {

class RawBuf {
 public:
  uint8_t* data() { return p_.get(); }
  size_t size() const { return len_; }
  size_t capacity() const { return cap_; }
  void clear() { len_ = 0; }

  void Reserve(size_t n) {
    if (n <= cap_) return;
    std::unique_ptr<uint8_t[]> q(new uint8_t[n]);  // default-initialised: not zeroed
    if (len_) memcpy(q.get(), p_.get(), len_);
    p_ = std::move(q);
    cap_ = n;
  }

  // n more bytes at the end, uninitialised; grows by at least doubling.
  uint8_t* Append(size_t n) {
    if (len_ + n > cap_) Reserve(std::max(len_ + n, 2 * cap_));
    uint8_t* at = p_.get() + len_;
    len_ += n;
    return at;
  }

 private:
  std::unique_ptr<uint8_t[]> p_;
  size_t len_ = 0, cap_ = 0;
};

}  // namespace sos::mem
