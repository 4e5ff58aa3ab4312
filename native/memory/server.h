// The memory node's TCP server: one epoll thread owns the listening socket
// and every connection (non-blocking, bounded input and output per
// connection), runs the handshake, serves sealed requests from the Store and
// frees regions whose lease lapsed. No JavaScript runs per request. With a
// TLS context, every connection first completes a TLS 1.3 handshake with a
// client certificate of the cluster; frames then travel in TLS records,
// unsealed (one encryption layer).
#pragma once
#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "memory/crypto.h"
#include "memory/raw_buf.h"
#include "memory/rdma_export.h"
#include "memory/store.h"
#include "memory/tls.h"

namespace sos::mem {

struct ServerOptions {
  uint64_t capacityPages = 0;
  uint32_t leaseMs = 30000;
  uint32_t handshakeMs = 5000;
  uint32_t maxUnauthenticated = 64;
  size_t outHigh = 4 << 20;  // stop reading a connection whose replies queue beyond this
  RdmaExportOptions rdma;
  std::shared_ptr<TlsContext> tls;  // set: mutual TLS before the application handshake
};

class Server {
 public:
  explicit Server(const ServerOptions& o);
  ~Server();
  // Bind and start the thread; returns 0 or a negative errno (port 0: any).
  int Listen(const std::string& host, uint16_t port, std::string* boundHost, uint16_t* boundPort);
  void Stop();
  void AddApplication(const std::string& name, Bytes secret);
  // New connections use this context (a rotated certificate, a new CRL); open ones keep theirs.
  void SetTls(std::shared_ptr<TlsContext> tls);
  // Closes that application's connections and frees its regions.
  bool RemoveApplication(const std::string& name);

  struct Snapshot {
    uint64_t capacity, reserved, connections, unauthenticated, badFrames, refusedConnections, expired, rdmaExports,
        tlsRefused;
    Counters total;
    std::map<std::string, Counters> apps;
    std::vector<std::string> log;
  };
  Snapshot Stats();

 private:
  struct Conn;
  void Loop();
  void Accept(int64_t now);
  void OnReadable(Conn* c, int64_t now);
  void OnWritable(Conn* c);
  void Process(Conn* c, int64_t now);
  // Drive c's TLS handshake: true when it is done; false when it waits (interest updated) or was
  // refused (c closed).
  bool TlsStep(Conn* c);
  void Drain(Conn* c);  // a refused connection's input, dropped
  bool Handshake(Conn* c, uint16_t type, const uint8_t* body, uint32_t len);
  bool Request(Conn* c, uint16_t type, const uint8_t* body, uint32_t len, int64_t now);
  uint8_t* OutSpace(Conn* c, size_t n);
  void SendClear(Conn* c, uint16_t type, const uint8_t* body, uint32_t len);
  // {head[headLen], data[dataLen]} as one frame onto c's output queue: sealed, or as is over TLS.
  void SendFrame(Conn* c, uint16_t type, const uint8_t* head, uint32_t headLen, const uint8_t* data, uint32_t dataLen);
  void Reply(Conn* c, uint16_t op, uint32_t id, uint32_t status, const uint8_t* extra = nullptr, uint32_t extraLen = 0);
  void Bad(Conn* c, const std::string& why);  // log, count, close
  void CloseConn(Conn* c);
  void UpdateInterest(Conn* c);
  void Log(const std::string& line);

  ServerOptions opt_;
  std::mutex mu_;  // everything below, between the thread and JS calls
  Store store_;
  RdmaExports rdma_;  // after store_: destroyed first, so MRs go before the pages they pin
  std::map<std::string, Bytes> apps_;
  Bytes dummy_;  // unknown applications prove against this: refused like a wrong key
  std::map<int, std::unique_ptr<Conn>> conns_;
  std::deque<std::string> log_;
  uint64_t unauth_ = 0, badFrames_ = 0, refused_ = 0, expired_ = 0, tlsRefused_ = 0;
  std::shared_ptr<TlsContext> tls_;
  int listen_ = -1, epoll_ = -1, wake_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Bytes scratch_;
  std::vector<RawBuf> spare_;  // sent output buffers, kept for the next replies
};

}  // namespace sos::mem
