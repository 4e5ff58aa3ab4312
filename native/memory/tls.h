// TLS 1.3 with mutual certificate authentication for the memory node's data channel, on the OpenSSL
// that Node links: a context per server or client (the cluster CA, its own certificate and key, the
// CRL), the checks lib/cluster/identity.ts `peerIdentity` makes of a verified peer (O = the cluster,
// one OU naming a role, one CN), a non-blocking session per connection, and the client's blocking
// stream over one.
#pragma once
#include <openssl/ssl.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sos::mem {

struct TlsOptions {
  std::string caPem, certPem, keyPem, crlPem;  // crlPem may be empty (then no revocation check)
  std::string cluster;                         // the subject O a peer's certificate must name
  std::vector<std::string> roles;              // the OUs allowed (empty: node, orchestrator, operator)
  std::string peerName;                        // a client's: the server's CN must be this ('': any)
};

class TlsContext {
 public:
  // nullptr and *err ("PEM_read_bio_X509 (CA certificate): no start line") when the PEM does not load.
  static std::shared_ptr<TlsContext> Create(const TlsOptions& o, bool server, std::string* err);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* ctx() const { return ctx_; }
  const TlsOptions& options() const { return o_; }
  bool server() const { return server_; }

 private:
  TlsContext() = default;
  SSL_CTX* ctx_ = nullptr;
  TlsOptions o_;
  bool server_ = false;
};

enum class TlsStatus { kOk, kWantRead, kWantWrite, kClosed, kFailed };

// One connection's TLS, over a non-blocking socket it does not own. Not thread-safe (TlsStream is).
class TlsSession {
 public:
  // nullptr and *err when SSL_new or SSL_set_fd fails.
  static std::unique_ptr<TlsSession> Make(std::shared_ptr<TlsContext> ctx, int fd, std::string* err);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;
  TlsStatus Handshake();
  TlsStatus Read(void* p, size_t n, size_t* got);
  // Takes what fits in the write buffer; Flush sends it (Write flushes only when the buffer is full).
  TlsStatus Write(const void* p, size_t n, size_t* put);
  // Send what SSL wrote: kOk (all of it), kWantWrite, kFailed.
  TlsStatus Flush();
  bool Unflushed() const;
  // After kFailed (or kClosed): what went wrong, and as which code: ERR_AUTH (a certificate refused,
  // by us or by the peer's alert), ERR_CLUSTER, ERR_ROLE, ERR_WRONG_PEER (our identity checks of the
  // peer), ERR_PROTOCOL (not TLS, or a TLS failure that is not about certificates), or an errno name.
  const std::string& error() const { return error_; }
  const std::string& code() const { return code_; }
  bool handshakeDone() const { return done_; }
  // The alert the peer sent, when it did ("tlsv1 alert unknown ca").
  const std::string& alert() const { return alert_; }
  // Called by the verify callback on the peer's leaf, verified by OpenSSL so far.
  bool CheckPeer(X509* leaf);

 private:
  TlsSession() = default;
  TlsStatus Fail(const char* call, int ret);
  TlsStatus AfterFailure(const char* call, int ret, bool* retry);
  std::shared_ptr<TlsContext> ctx_;
  SSL* ssl_ = nullptr;
  BIO* net_ = nullptr;  // the network end of the write pair
  int fd_ = -1;
  bool done_ = false;
  std::string error_, code_, identityCode_, identityWhy_, alert_;
};

// The client's side: blocking calls over the non-blocking socket, bounded by timeoutMs each. SSL
// calls hold one mutex; waits for the socket are outside it, so one thread reads while another writes
// (shutdown(fd) ends a wait at once).
class TlsStream {
 public:
  TlsStream(std::unique_ptr<TlsSession> s, int fd, uint32_t timeoutMs)
      : s_(std::move(s)), fd_(fd), timeoutMs_(timeoutMs) {}
  bool Handshake();
  // > 0 bytes, 0 at the end of the stream, -1 on failure (errno EAGAIN: timed out).
  ssize_t Read(void* p, size_t n);
  bool WriteAll(const void* p, size_t n);
  std::string error() {
    std::lock_guard<std::mutex> l(mu_);
    return s_->error();
  }
  std::string code() {
    std::lock_guard<std::mutex> l(mu_);
    return s_->code();
  }
  std::string alert() {
    std::lock_guard<std::mutex> l(mu_);
    return s_->alert();
  }

 private:
  bool Wait(TlsStatus st);
  std::mutex mu_;
  std::unique_ptr<TlsSession> s_;
  int fd_;
  uint32_t timeoutMs_;
};

}  // namespace sos::mem
