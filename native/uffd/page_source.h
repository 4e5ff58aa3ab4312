// Where the fault engine gets page contents. Small on purpose (umap's Store):
// later transports (TCP, RDMA, replicated) implement the same interface.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "uffd/mapping.h"

namespace sos {

class PageSource {
 public:
  virtual ~PageSource() = default;
  virtual const char* Kind() const = 0;
  // Bytes available from offset 0; reads past it yield zeros.
  virtual uint64_t Size() const = 0;
  // All-zero source: the engine resolves with UFFDIO_ZEROPAGE, no copy.
  virtual bool IsZero() const { return false; }
  // A 4 KiB page this source was never given: it reads as zeros, so a pager
  // installs zeros with no fetch.
  virtual bool Unwritten(uint64_t page) const { return false; }
  // Directly addressable bytes for [off, off+len), or nullptr (zero-copy path).
  virtual const void* Direct(uint64_t off, uint64_t len) { return nullptr; }
  // Fill buf with [off, off+len). Returns 0 or a negative errno. Called from
  // engine threads concurrently: implementations must be thread-safe.
  virtual int Fetch(uint64_t off, void* buf, uint64_t len) = 0;
  // Store a run of pages back (eviction). Sources that cannot, return -ENOTSUP.
  virtual int Store(uint64_t off, const void* buf, uint64_t len) { return -95; }
  // Forget [off, off+len): its pages read as zeros again (Unwritten) until
  // stored anew. The caller guarantees no fetch or store of them is in
  // flight. 0, or -ENOTSUP for sources that cannot.
  virtual int Discard(uint64_t off, uint64_t len) { return -95; }
  // Batches: many runs at once, so a network source can keep them all in
  // flight (pipelined) and wait once. Each run's result lands in its io's
  // `result` (0 or a negative errno); the return is 0 when every run
  // succeeded, else the first run's error. The defaults loop over the above.
  struct Io {
    uint64_t off;
    void* buf;
    uint64_t len;
    int result;
  };
  virtual int FetchV(Io* ios, size_t n);
  virtual int StoreV(Io* ios, size_t n);
  // Hooks for a source that manages residency itself (a far-memory pager).
  // ResolveFault: resolve a missing fault at addr (buf: bufLen bytes of the
  // engine thread's scratch; write: the access was a store); 0 done, -EAGAIN
  // retry later, -ENOSYS (the default) lets the engine copy from Fetch as usual.
  virtual int ResolveFault(uint64_t addr, uint8_t* buf, size_t bufLen, bool write) { return -38; }
  // OnWriteFault: a synchronous write-protect fault; true when the source
  // unprotected and woke the page itself, false to let the engine do it.
  virtual bool OnWriteFault(uint64_t addr) { return false; }
};

class ZeroSource : public PageSource {
 public:
  const char* Kind() const override { return "zero"; }
  uint64_t Size() const override { return UINT64_MAX; }
  bool IsZero() const override { return true; }
  int Fetch(uint64_t, void* buf, uint64_t len) override;
};

// Another region of this process (pinned: it cannot move or unmap meanwhile).
class RegionSource : public PageSource {
 public:
  explicit RegionSource(std::shared_ptr<Mapping> m) : pin_(std::move(m)) {}
  const char* Kind() const override { return "region"; }
  uint64_t Size() const override { return pin_.get()->size; }
  const void* Direct(uint64_t off, uint64_t len) override;
  int Fetch(uint64_t off, void* buf, uint64_t len) override;
  int Store(uint64_t off, const void* buf, uint64_t len) override;

 private:
  Pin pin_;
};

// A file or memfd read with pread (its page cache is the store).
class FileSource : public PageSource {
 public:
  FileSource(int fd, uint64_t offset, uint64_t size) : fd_(fd), offset_(offset), size_(size) {}
  ~FileSource() override;
  const char* Kind() const override { return "file"; }
  uint64_t Size() const override { return size_; }
  int Fetch(uint64_t off, void* buf, uint64_t len) override;
  int Store(uint64_t off, const void* buf, uint64_t len) override;

 private:
  int fd_;  // owned (a dup)
  uint64_t offset_, size_;
};

// JS handle on a source: new NativeSource({ kind: 'zero' }), ({ kind:
// 'region', region }), ({ kind: 'file', fd, offset?, size? }).
class SourceWrap : public Napi::ObjectWrap<SourceWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit SourceWrap(const Napi::CallbackInfo& info);
  static SourceWrap* Unwrap(Napi::Value v);
  std::shared_ptr<PageSource> source() const { return source_; }
  // For native transports in later units to hand their sources to JS.
  void Adopt(std::shared_ptr<PageSource> s) { source_ = std::move(s); }

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  std::shared_ptr<PageSource> source_;
};

}  // namespace sos
