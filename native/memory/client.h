// RemoteSource: a PageSource whose pages live on a memory node. Connecting
// (TCP, handshake, ALLOC) blocks, so JS runs it off-thread. Then Fetch/Store
// and the batches may be called from any number of threads at once: each
// request is registered under its id and sent (pipelined), one waiting
// caller at a time reads and decrypts every reply straight into its
// caller's buffer, and a timer thread renews the region's lease. A dead connection fails
// every pending and later call with a negative errno. With a TLS context the connection is TLS 1.3
// with this side's certificate, the node's verified, and frames go unsealed inside it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "memory/crypto.h"
#include "memory/protocol.h"
#include "memory/raw_buf.h"
#include "memory/tls.h"
#include "uffd/page_source.h"

namespace sos::mem {

struct ConnectOptions {
  std::string host, application;
  uint16_t port = 0;
  Bytes secret;
  uint64_t size = 0;  // bytes, rounded up to pages
  // Open this application's region instead of allocating one (RENEW checks it
  // is there): a far-memory region handed over by another process.
  uint64_t region = 0;
  uint32_t timeoutMs = 10000;   // connect, handshake, and each request
  uint16_t version = kVersion;  // tests speak another to see the refusal
  std::shared_ptr<TlsContext> tls;
};

// Why a connect failed: `code` is ERR_AUTH, ERR_VERSION, ERR_MEMORY_FULL, ERR_PROTOCOL, the TLS
// identity checks' ERR_CLUSTER, ERR_ROLE, ERR_WRONG_PEER, or an errno name.
struct ConnectError {
  std::string code, message;
  int err = 0;
};

class RemoteSource : public PageSource {
 public:
  static std::shared_ptr<RemoteSource> Connect(const ConnectOptions& o, ConnectError* e);
  ~RemoteSource() override;
  const char* Kind() const override { return "remote"; }
  uint64_t Size() const override { return pages_ * kPage; }
  int Fetch(uint64_t off, void* buf, uint64_t len) override;
  int Store(uint64_t off, const void* buf, uint64_t len) override;
  int FetchV(Io* ios, size_t n) override;
  int StoreV(Io* ios, size_t n) override;
  // STATS of this application on the node: capacity, reserved, held, regions (pages).
  int RemoteStats(uint64_t out[4]);
  // ATTACH_RDMA: endpoint[kEndpoint] is this side's queue pair; out[kAttachReply]
  // gets the node's queue pair (already connected to ours) and the region's addr and rkey.
  int AttachRdma(const uint8_t* endpoint, uint8_t* out);
  // FREE the region, then end the connection; later calls fail with -ESHUTDOWN.
  int Release();
  // End the connection without FREE (the lease frees the region later).
  void Shutdown();

  uint64_t regionId() const { return region_; }
  uint32_t leaseMs() const { return leaseMs_; }
  int dead() {
    std::lock_guard<std::mutex> l(mu_);
    return dead_;
  }
  struct Counters {
    std::atomic<uint64_t> requests{0}, bytesIn{0}, bytesOut{0}, errors{0}, renewals{0};
  } counters;

 private:
  struct Waiter {
    std::condition_variable cv;
    size_t remaining = 0;
  };
  struct Pending {
    uint16_t op;
    uint8_t* buf;  // READ: where the pages go
    uint32_t len;  // READ: bytes expected
    int result = 0;
    uint8_t extra[kMaxReplyExtra];
    uint32_t extraLen = 0;
    Waiter* w;
  };
  struct Req {
    uint16_t op;
    uint64_t a;  // ALLOC: pages; READ, WRITE: first page; FREE, RENEW: region
    uint32_t count, id;
    const uint8_t* data;  // WRITE
    Pending p;
  };
  RemoteSource() = default;
  // Register and send every request, then wait for all; 0 or the first error.
  int Run(Req* reqs, size_t n);
  int Ranges(uint16_t op, Io* ios, size_t n);
  int ReceiveOne();
  void Renew();
  void Fail(int err);
  bool SendAll(const uint8_t* p, size_t n);
  bool RecvAll(uint8_t* p, size_t n);  // the handshake: exactly n bytes, nothing read ahead
  bool Buffered(size_t n);             // replies (only the reader calls it)

  int fd_ = -1;
  uint64_t pages_ = 0, region_ = 0;
  uint32_t leaseMs_ = 0, timeoutMs_ = 10000;
  Gcm tx_, rx_;
  std::unique_ptr<TlsStream> tls_;  // TLS mode: every byte goes through it
  std::mutex sendMu_;               // tx_, txbuf_ and the socket's write side
  RawBuf txbuf_;                    // sealed frames on their way out, kept across calls
  std::mutex mu_;                   // below
  std::unordered_map<uint32_t, Pending*> pending_;
  uint32_t nextId_ = 1;
  int dead_ = 0;
  bool released_ = false;
  std::condition_variable stopCv_;
  bool reading_ = false;          // a waiter is in ReceiveOne
  std::vector<Waiter*> waiting_;  // waiters not reading, first in line first
  std::thread renewer_;
  Bytes rxbuf_;
  size_t rxPos_ = 0, rxEnd_ = 0;  // unread reply bytes in rxbuf_
};

int StatusErrno(uint32_t status);

}  // namespace sos::mem
