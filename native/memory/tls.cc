#include "memory/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "core/common.h"

namespace sos::mem {

static constexpr size_t kTlsReadBuffer = 64 << 10;
// SSL writes its records here; Flush sends them in large pieces, not one send per 16 KiB record.
static constexpr size_t kTlsWriteBuffer = 64 << 10;

// The first queued OpenSSL error's reason ("no start line"), the queue cleared.
static std::string TakeError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return "unknown error";
  const char* r = ERR_reason_error_string(e);
  return r ? r : "error " + std::to_string(ERR_GET_REASON(e));
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
static BioPtr MemBio(const std::string& s) { return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size()))); }

// Every certificate (or CRL) of a PEM string into the context's store; how many, or -1 and *err.
template <typename T, typename Read, typename Add, typename Free>
static int LoadAll(const std::string& pem, const char* call, const char* what, Read rd, Add add, Free fr,
                   std::string* err) {
  BioPtr b = MemBio(pem);
  if (!b) {
    *err = std::string("BIO_new_mem_buf (") + what + "): " + TakeError();
    return -1;
  }
  int n = 0;
  for (;;) {
    T* x = rd(b.get(), nullptr, nullptr, nullptr);
    if (!x) break;
    int ok = add(x);
    fr(x);
    if (ok != 1) {
      *err = std::string(call) + " (" + what + "): " + TakeError();
      return -1;
    }
    n++;
  }
  ERR_clear_error();  // the end of the PEM reads as "no start line"
  if (!n) *err = std::string(call) + " (" + what + "): no PEM block";
  return n ? n : -1;
}

static int VerifyPeer(int ok, X509_STORE_CTX* x) {
  if (!ok || X509_STORE_CTX_get_error_depth(x) != 0) return ok;
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* s = ssl ? static_cast<TlsSession*>(SSL_get_ex_data(ssl, 0)) : nullptr;
  if (s && s->CheckPeer(X509_STORE_CTX_get_current_cert(x))) return 1;
  // Fails the handshake; the peer gets an alert.
  X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

std::shared_ptr<TlsContext> TlsContext::Create(const TlsOptions& o, bool server, std::string* err) {
  std::shared_ptr<TlsContext> c(new TlsContext());
  c->o_ = o;
  if (c->o_.roles.empty()) c->o_.roles = {"node", "orchestrator", "operator"};
  c->server_ = server;
  ERR_clear_error();
  c->ctx_ = SSL_CTX_new(TLS_method());
  if (!c->ctx_) {
    *err = "SSL_CTX_new: " + TakeError();
    return nullptr;
  }
  SSL_CTX* ctx = c->ctx_;
  // TLS 1.3 only, as the cluster's other listeners; no session tickets (nothing resumes).
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
    *err = "SSL_CTX_set_min_proto_version: " + TakeError();
    return nullptr;
  }
  SSL_CTX_set_num_tickets(ctx, 0);
  // A peer that closes without close_notify has ended the stream, not truncated it: frames carry
  // their own lengths.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // SSL_write then behaves like send(): part written, the rest later, from wherever the buffer is now.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Several records per recv instead of two recvs per record (header, then body); bounded, as a
  // connection's input is (the server reads again only when SSL says it wants to, see server.cc).
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, kTlsReadBuffer);
  {
    BioPtr b = MemBio(o.certPem);
    X509* cert = b ? PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr) : nullptr;
    if (!cert) {
      *err = "PEM_read_bio_X509 (certificate): " + TakeError();
      return nullptr;
    }
    int ok = SSL_CTX_use_certificate(ctx, cert);
    X509_free(cert);
    if (ok != 1) {
      *err = "SSL_CTX_use_certificate: " + TakeError();
      return nullptr;
    }
  }
  {
    BioPtr b = MemBio(o.keyPem);
    EVP_PKEY* key = b ? PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr) : nullptr;
    if (!key) {
      *err = "PEM_read_bio_PrivateKey: " + TakeError();
      return nullptr;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1) {
      *err = std::string(ok != 1 ? "SSL_CTX_use_PrivateKey" : "SSL_CTX_check_private_key") + ": " + TakeError();
      return nullptr;
    }
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  if (LoadAll<X509>(
          o.caPem, "X509_STORE_add_cert", "CA certificate", PEM_read_bio_X509,
          [&](X509* x) { return X509_STORE_add_cert(store, x); }, X509_free, err) < 0)
    return nullptr;
  if (!o.crlPem.empty()) {
    if (LoadAll<X509_CRL>(
            o.crlPem, "X509_STORE_add_crl", "CRL", PEM_read_bio_X509_CRL,
            [&](X509_CRL* x) { return X509_STORE_add_crl(store, x); }, X509_CRL_free, err) < 0)
      return nullptr;
    // The leaf against the CA's list (the CA itself is the trust anchor).
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  }
  SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER, VerifyPeer);
  return c;
}

TlsContext::~TlsContext() {
  if (ctx_) SSL_CTX_free(ctx_);
}

std::unique_ptr<TlsSession> TlsSession::Make(std::shared_ptr<TlsContext> ctx, int fd, std::string* err) {
  std::unique_ptr<TlsSession> s(new TlsSession());
  ERR_clear_error();
  s->ssl_ = SSL_new(ctx->ctx());
  if (!s->ssl_) {
    *err = "SSL_new: " + TakeError();
    return nullptr;
  }
  // Reads straight from the socket; writes into a BIO pair that Flush empties onto it.
  BIO* sock = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* inner = nullptr;
  if (!sock || BIO_new_bio_pair(&inner, kTlsWriteBuffer, &s->net_, 0) != 1) {
    *err = std::string(sock ? "BIO_new_bio_pair: " : "BIO_new_socket: ") + TakeError();
    if (sock) BIO_free(sock);
    return nullptr;
  }
  SSL_set_bio(s->ssl_, sock, inner);  // SSL owns both now
  s->fd_ = fd;
  SSL_set_ex_data(s->ssl_, 0, s.get());  // for VerifyPeer
  if (ctx->server())
    SSL_set_accept_state(s->ssl_);
  else
    SSL_set_connect_state(s->ssl_);
  s->ctx_ = std::move(ctx);
  return s;
}

TlsSession::~TlsSession() {
  if (ssl_) SSL_free(ssl_);
  if (net_) BIO_free(net_);
}

bool TlsSession::Unflushed() const { return BIO_ctrl_pending(net_) > 0; }

TlsStatus TlsSession::Flush() {
  for (;;) {
    char* p = nullptr;
    int n = BIO_nread0(net_, &p);  // the contiguous part of the ring
    if (n <= 0) return TlsStatus::kOk;
    ssize_t w = send(fd_, p, static_cast<size_t>(n), MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return TlsStatus::kWantWrite;
      code_ = ErrnoName(errno);
      error_ = std::string("send: ") + strerror(errno);
      return TlsStatus::kFailed;
    }
    BIO_nread(net_, &p, static_cast<int>(w));
  }
}

// After an SSL call that did not succeed: a full write buffer is flushed and the call retried;
// what SSL queued (a handshake flight, an alert) goes out before waiting to read.
TlsStatus TlsSession::AfterFailure(const char* call, int ret, bool* retry) {
  *retry = false;
  TlsStatus st = Fail(call, ret);
  if (st == TlsStatus::kWantWrite) {
    TlsStatus f = Flush();
    *retry = f == TlsStatus::kOk;
    return f == TlsStatus::kOk ? TlsStatus::kWantWrite : f;
  }
  if (st == TlsStatus::kWantRead) {
    TlsStatus f = Flush();
    return f == TlsStatus::kOk ? st : f;
  }
  if (st == TlsStatus::kFailed) {
    std::string code = code_, error = error_;
    Flush();  // best effort: the alert tells the peer why
    code_ = code;
    error_ = error;
  }
  return st;
}

// A subject attribute that occurs exactly once, as text; false when absent, repeated or not plain.
static bool OneEntry(X509_NAME* n, int nid, std::string* out) {
  int i = X509_NAME_get_index_by_NID(n, nid, -1);
  if (i < 0 || X509_NAME_get_index_by_NID(n, nid, i) >= 0) return false;
  ASN1_STRING* d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
  const unsigned char* p = ASN1_STRING_get0_data(d);
  int len = ASN1_STRING_length(d);
  out->assign(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
  for (char ch : *out)
    if (ch < 0x20 || ch > 0x7e) return false;
  return !out->empty();
}

bool TlsSession::CheckPeer(X509* leaf) {
  const TlsOptions& o = ctx_->options();
  X509_NAME* n = leaf ? X509_get_subject_name(leaf) : nullptr;
  std::string org, cn, ou;
  if (!n || !OneEntry(n, NID_organizationName, &org) || org != o.cluster) {
    identityCode_ = "ERR_CLUSTER";
    identityWhy_ = "the peer's certificate is of cluster \"" + org + "\", not \"" + o.cluster + "\"";
    return false;
  }
  bool role = OneEntry(n, NID_organizationalUnitName, &ou);
  bool known = false;
  for (const std::string& r : o.roles) known = known || (role && r == ou);
  if (!OneEntry(n, NID_commonName, &cn) || !known) {
    identityCode_ = "ERR_ROLE";
    identityWhy_ = "the peer's certificate names no role allowed here (OU=\"" + ou + "\")";
    return false;
  }
  if (!o.peerName.empty() && cn != o.peerName) {
    identityCode_ = "ERR_WRONG_PEER";
    identityWhy_ = "the peer's certificate names \"" + cn + "\", not \"" + o.peerName + "\"";
    return false;
  }
  return true;
}

// Alerts a peer sends about a certificate it will not take (ours), or after its own identity check
// (VerifyPeer's failure reaches the wire as handshake_failure).
static bool CertificateAlert(int alert) {
  switch (alert) {
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED: return true;
    default: return false;
  }
}

TlsStatus TlsSession::Fail(const char* call, int ret) {
  int sysErr = errno;
  int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_WANT_READ) return TlsStatus::kWantRead;
  if (e == SSL_ERROR_WANT_WRITE) return TlsStatus::kWantWrite;
  unsigned long q = ERR_peek_error();
  std::string reason = TakeError();
  int r = ERR_GET_REASON(q);
  long verify = SSL_get_verify_result(ssl_);
  if (e == SSL_ERROR_ZERO_RETURN) {
    code_ = "ECONNRESET";
    error_ = "the peer ended the TLS session";
    return TlsStatus::kClosed;
  }
  if (!identityCode_.empty()) {
    code_ = identityCode_;
    error_ = identityWhy_;
  } else if (q && ERR_GET_LIB(q) == ERR_LIB_SSL && r == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    code_ = "ERR_AUTH";
    error_ = std::string("the peer's certificate did not verify: ") +
             X509_verify_cert_error_string(verify == X509_V_OK ? X509_V_ERR_UNSPECIFIED : verify);
  } else if (q && ERR_GET_LIB(q) == ERR_LIB_SSL && r == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    code_ = "ERR_AUTH";
    error_ = "the peer sent no certificate";
  } else if (q && ERR_GET_LIB(q) == ERR_LIB_SSL && r > SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256) {
    bool cert = CertificateAlert(r - SSL_AD_REASON_OFFSET);
    code_ = cert ? "ERR_AUTH" : "ERR_PROTOCOL";
    error_ = std::string("the peer refused the TLS handshake (") + reason + ")";
    alert_ = reason;
  } else if ((q && ERR_GET_LIB(q) == ERR_LIB_SSL && r == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
             (e == SSL_ERROR_SYSCALL && !q)) {
    code_ = sysErr && e == SSL_ERROR_SYSCALL ? ErrnoName(sysErr) : "ECONNRESET";
    error_ = std::string(call) + ": the peer closed the connection";
  } else {
    code_ = "ERR_PROTOCOL";
    error_ = std::string(call) + ": " + reason;
  }
  return TlsStatus::kFailed;
}

TlsStatus TlsSession::Handshake() {
  for (bool retry = true; retry;) {
    if (done_) return TlsStatus::kOk;
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) {
      TlsStatus f = Flush();  // the client's last flight
      if (f == TlsStatus::kFailed) return f;
      done_ = true;
      return TlsStatus::kOk;
    }
    TlsStatus st = AfterFailure("SSL_do_handshake", r, &retry);
    if (!retry) return st;
  }
  return TlsStatus::kFailed;
}

TlsStatus TlsSession::Read(void* p, size_t n, size_t* got) {
  for (bool retry = true; retry;) {
    ERR_clear_error();
    if (SSL_read_ex(ssl_, p, n, got) == 1) {
      // Rarely anything to send (a key update's answer); the next write or wait sends the rest.
      if (Unflushed() && Flush() == TlsStatus::kFailed) return TlsStatus::kFailed;
      return TlsStatus::kOk;
    }
    *got = 0;
    TlsStatus st = AfterFailure("SSL_read", 0, &retry);
    if (!retry) return st;
  }
  return TlsStatus::kFailed;
}

TlsStatus TlsSession::Write(const void* p, size_t n, size_t* put) {
  for (bool retry = true; retry;) {
    ERR_clear_error();
    if (SSL_write_ex(ssl_, p, n, put) == 1) return TlsStatus::kOk;  // buffered: Flush sends it
    *put = 0;
    TlsStatus st = AfterFailure("SSL_write", 0, &retry);
    if (!retry) return st;
  }
  return TlsStatus::kFailed;
}

bool TlsStream::Wait(TlsStatus st) {
  pollfd p{fd_, static_cast<short>(st == TlsStatus::kWantRead ? POLLIN : POLLOUT), 0};
  int r;
  do r = poll(&p, 1, static_cast<int>(timeoutMs_));
  while (r < 0 && errno == EINTR);
  if (r == 0) errno = EAGAIN;
  return r > 0;
}

bool TlsStream::Handshake() {
  for (;;) {
    TlsStatus st;
    {
      std::lock_guard<std::mutex> l(mu_);
      st = s_->Handshake();
    }
    if (st == TlsStatus::kOk) return true;
    if (st != TlsStatus::kWantRead && st != TlsStatus::kWantWrite) {
      errno = EPROTO;
      return false;
    }
    if (!Wait(st)) return false;
  }
}

ssize_t TlsStream::Read(void* p, size_t n) {
  for (;;) {
    TlsStatus st;
    size_t got = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      st = s_->Read(p, n, &got);
    }
    if (st == TlsStatus::kOk) return static_cast<ssize_t>(got);
    if (st == TlsStatus::kClosed) {
      errno = 0;  // not a stale EAGAIN from SSL's last recv
      return 0;
    }
    if (st == TlsStatus::kFailed) {
      errno = ECONNRESET;
      return -1;
    }
    if (!Wait(st)) return -1;
  }
}

bool TlsStream::WriteAll(const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  while (n) {
    TlsStatus st;
    size_t put = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      st = s_->Write(b, n, &put);
    }
    if (st == TlsStatus::kOk) {
      b += put;
      n -= put;
      continue;
    }
    if (st != TlsStatus::kWantRead && st != TlsStatus::kWantWrite) {
      errno = ECONNRESET;
      return false;
    }
    if (!Wait(st)) return false;
  }
  for (;;) {
    TlsStatus st;
    {
      std::lock_guard<std::mutex> l(mu_);
      st = s_->Flush();
    }
    if (st == TlsStatus::kOk) return true;
    if (st != TlsStatus::kWantWrite) {
      errno = ECONNRESET;
      return false;
    }
    if (!Wait(st)) return false;
  }
}

}  // namespace sos::mem
