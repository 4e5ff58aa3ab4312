#include "memory/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/common.h"

namespace sos::mem {

int StatusErrno(uint32_t status) {
  switch (status) {
    case S_OK: return 0;
    case S_FULL: return -ENOSPC;
    case S_NO_REGION: return -ENOENT;
    case S_RANGE: return -ERANGE;
    case S_UNSUPPORTED: return -EOPNOTSUPP;
    case S_LIMIT: return -EMFILE;
    case S_RDMA: return -EREMOTEIO;
    default: return -EPROTO;
  }
}

static void SetTimeouts(int fd, uint32_t rcvMs, uint32_t sndMs) {
  timeval r{static_cast<time_t>(rcvMs / 1000), static_cast<suseconds_t>((rcvMs % 1000) * 1000)};
  timeval s{static_cast<time_t>(sndMs / 1000), static_cast<suseconds_t>((sndMs % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof r);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof s);
}

static int Dial(const std::string& host, uint16_t port, uint32_t timeoutMs, int* fdOut) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  std::string ps = std::to_string(port);
  if (getaddrinfo(host.c_str(), ps.c_str(), &hints, &res) != 0) return -EHOSTUNREACH;
  int err = -ECONNREFUSED;
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = -errno;
      continue;
    }
    int r = connect(fd, a->ai_addr, a->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      r = poll(&p, 1, static_cast<int>(timeoutMs));
      if (r == 0) {
        errno = ETIMEDOUT;
        r = -1;
      } else if (r > 0) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        errno = soerr;
        r = soerr ? -1 : 0;
      }
    }
    if (r == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      unsigned int ut = timeoutMs;
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      freeaddrinfo(res);
      *fdOut = fd;
      return 0;
    }
    err = -errno;
    close(fd);
  }
  freeaddrinfo(res);
  return err;
}

bool RemoteSource::SendAll(const uint8_t* p, size_t n) {
  if (tls_) return tls_->WriteAll(p, n);
  while (n) {
    ssize_t w = send(fd_, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool RemoteSource::RecvAll(uint8_t* p, size_t n) {
  while (n) {
    ssize_t r = tls_ ? tls_->Read(p, n) : recv(fd_, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// At least n bytes of the reply stream in rxbuf_ from rxPos_: each recv takes
// whatever has arrived, so a burst of small replies costs one syscall, not
// two per reply. A partial frame is moved to the front when it would not fit.
bool RemoteSource::Buffered(size_t n) {
  if (rxEnd_ - rxPos_ >= n) return true;
  if (rxPos_ + n > rxbuf_.size()) {
    memmove(rxbuf_.data(), rxbuf_.data() + rxPos_, rxEnd_ - rxPos_);
    rxEnd_ -= rxPos_;
    rxPos_ = 0;
  }
  while (rxEnd_ - rxPos_ < n) {
    ssize_t r = tls_ ? tls_->Read(rxbuf_.data() + rxEnd_, rxbuf_.size() - rxEnd_)
                     : recv(fd_, rxbuf_.data() + rxEnd_, rxbuf_.size() - rxEnd_, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    rxEnd_ += static_cast<size_t>(r);
  }
  return true;
}

std::shared_ptr<RemoteSource> RemoteSource::Connect(const ConnectOptions& o, ConnectError* e) {
  auto fail = [&](const char* code, const std::string& msg, int err = 0) {
    e->code = code;
    e->message = msg;
    e->err = err;
    return nullptr;
  };
  std::shared_ptr<RemoteSource> s(new RemoteSource());
  s->timeoutMs_ = o.timeoutMs;
  s->pages_ = (o.size + kPage - 1) / kPage;
  std::string where = o.host + ":" + std::to_string(o.port);
  int r = Dial(o.host, o.port, o.timeoutMs, &s->fd_);
  if (r < 0) return fail(ErrnoName(-r), "cannot connect to the memory node " + where + ": " + strerror(-r), -r);
  SetTimeouts(s->fd_, o.timeoutMs, o.timeoutMs);
  if (o.tls) {
    // Non-blocking under SSL: TlsStream waits in poll, outside its lock (see tls.h).
    std::string err;
    auto sess = TlsSession::Make(o.tls, s->fd_, &err);
    if (!sess || fcntl(s->fd_, F_SETFL, fcntl(s->fd_, F_GETFL) | O_NONBLOCK) != 0)
      return fail("EIO", "TLS to the memory node " + where + ": " + (sess ? "fcntl failed" : err), EIO);
    s->tls_ = std::make_unique<TlsStream>(std::move(sess), s->fd_, o.timeoutMs);
    if (!s->tls_->Handshake()) {
      if (errno == EAGAIN)
        return fail("ETIMEDOUT", "the TLS handshake with the memory node " + where + " timed out", ETIMEDOUT);
      std::string code = s->tls_->code();
      if (code.rfind("ERR_", 0) != 0)
        return fail("ERR_PROTOCOL",
                    "the memory node " + where + " closed the connection in the TLS handshake (does it serve TLS?)");
      return fail(code.c_str(), "the memory node " + where + ": " + s->tls_->error());
    }
  }
  // Client hello.
  uint8_t cn[kNonce], sn[kNonce];
  RandomBytes(cn, kNonce);
  size_t nl = o.application.size();
  Bytes ch(7 + nl + kNonce);
  Put32(ch.data(), kMagic);
  Put16(ch.data() + 4, o.version);
  ch[6] = static_cast<uint8_t>(nl);
  memcpy(ch.data() + 7, o.application.data(), nl);
  memcpy(ch.data() + 7 + nl, cn, kNonce);
  // TLS 1.3: the client's handshake ends before the node has checked its certificate, so a refusal
  // arrives after it, as an alert or as the connection closed before the node's hello.
  auto refusedCert = [&]() {
    std::string alert = s->tls_->alert();
    return fail("ERR_AUTH", "the memory node " + where + " refused this side's certificate (" +
                                (alert.empty() ? "it closed the connection" : alert) +
                                "): not of its CA, of another cluster or role, or revoked");
  };
  uint8_t h[kHeader];
  PutHeader(h, static_cast<uint32_t>(ch.size()), T_CLIENT_HELLO);
  if (!s->SendAll(h, kHeader) || !s->SendAll(ch.data(), ch.size())) {
    if (s->tls_ && errno != EAGAIN) return refusedCert();
    return fail("ECONNRESET", "the memory node " + where + " closed the connection", ECONNRESET);
  }
  auto readClear = [&](uint16_t* type, Bytes* body) -> bool {
    uint8_t hh[kHeader];
    if (!s->RecvAll(hh, kHeader)) return false;
    uint32_t len = Get32(hh);
    if (len > 128) return false;
    *type = Get16(hh + 4);
    body->resize(len);
    return s->RecvAll(body->data(), len);
  };
  auto refusal = [&](const Bytes& b) {
    uint32_t st = b.size() == 4 ? Get32(b.data()) : 0;
    if (st == S_VERSION)
      return fail("ERR_VERSION",
                  "the memory node " + where + " does not speak protocol version " + std::to_string(o.version));
    return fail("ERR_AUTH", "the memory node " + where + " refused application '" + o.application +
                                "' (unknown application or wrong secret)");
  };
  uint16_t type = 0;
  Bytes sh;
  if (!readClear(&type, &sh)) {
    if (s->tls_ && errno != EAGAIN) return refusedCert();
    return fail("ERR_PROTOCOL", "the memory node " + where + " closed the connection during the handshake", ECONNRESET);
  }
  if (type == T_REFUSE) return refusal(sh);
  if (type != T_SERVER_HELLO || sh.size() != kServerHello || Get32(sh.data()) != kMagic ||
      Get16(sh.data() + 4) != o.version)
    return fail("ERR_PROTOCOL", "malformed server hello from " + where);
  memcpy(sn, sh.data() + 6, kNonce);
  uint8_t proof[32], want[32];
  Proof(o.secret, "client", ch.data(), ch.size(), sh.data(), sh.size(), proof);
  PutHeader(h, 32, T_PROOF);
  if (!s->SendAll(h, kHeader) || !s->SendAll(proof, 32))
    return fail("ECONNRESET", "the memory node " + where + " closed the connection", ECONNRESET);
  Bytes sp;
  if (!readClear(&type, &sp))
    return fail("ERR_PROTOCOL", "the memory node " + where + " closed the connection during the handshake", ECONNRESET);
  if (type == T_REFUSE) return refusal(sp);
  Proof(o.secret, "server", ch.data(), ch.size(), sh.data(), sh.size(), want);
  if (type != T_PROOF || sp.size() != 32 || !ProofEqual(sp.data(), want))
    return fail("ERR_AUTH", "the memory node " + where + " did not prove the secret");
  if (!s->tls_) {
    uint8_t k1[32], k2[32];
    DeriveKey(o.secret, cn, sn, "client-to-server", k1);
    DeriveKey(o.secret, cn, sn, "server-to-client", k2);
    s->tx_.SetKey(k1, true);
    s->rx_.SetKey(k2, false);
  }
  s->rxbuf_.resize(2 * (kHeader + kMaxBody + kTag));  // from here on, replies are read buffered
  RemoteSource* raw = s.get();
  Req a{};
  if (o.region) {
    a.op = T_RENEW;
    a.a = o.region;
    int st = s->Run(&a, 1);
    if (st == -ENOENT)
      return fail("ERR_NO_REGION", "the memory node " + where + " holds no region " + std::to_string(o.region) +
                                       " of application '" + o.application + "' (freed, or its lease lapsed)");
    if (st < 0) return fail(ErrnoName(-st), std::string("RENEW failed: ") + strerror(-st), -st);
    s->region_ = o.region;
    s->leaseMs_ = Get32(a.p.extra);
    s->renewer_ = std::thread([raw] { raw->Renew(); });
    return s;
  }
  a.op = T_ALLOC;
  a.a = s->pages_;
  int st = s->Run(&a, 1);
  if (st == -ENOSPC)
    return fail("ERR_MEMORY_FULL",
                "the memory node " + where + " has no room for " + std::to_string(s->pages_) + " more pages");
  if (st < 0) return fail(ErrnoName(-st), std::string("ALLOC failed: ") + strerror(-st), -st);
  s->region_ = Get64(a.p.extra);
  s->leaseMs_ = Get32(a.p.extra + 16);
  s->renewer_ = std::thread([raw] { raw->Renew(); });
  return s;
}

RemoteSource::~RemoteSource() {
  Shutdown();
  if (fd_ >= 0) close(fd_);
}

void RemoteSource::Fail(int err) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!dead_) dead_ = err;
    for (auto& [id, p] : pending_) {
      p->result = err;
      if (--p->w->remaining == 0) p->w->cv.notify_all();
    }
    pending_.clear();
  }
  stopCv_.notify_all();
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
}

void RemoteSource::Shutdown() {
  Fail(-ESHUTDOWN);
  if (renewer_.joinable() && renewer_.get_id() != std::this_thread::get_id()) renewer_.join();
}

int RemoteSource::Release() {
  int r = dead();
  if (!r && region_) {
    Req f{};
    f.op = T_FREE;
    f.a = region_;
    r = Run(&f, 1);
  }
  Shutdown();
  return r;
}

static uint32_t HeadLen(uint16_t op) {
  switch (op) {
    case T_READ:
    case T_WRITE: return kRangeReq;
    case T_STATS: return kReqHead;
    case T_ATTACH_RDMA: return kAttachReq;
    default: return 12;
  }
}

int RemoteSource::Run(Req* reqs, size_t n) {
  if (!n) return 0;
  Waiter w;
  w.remaining = n;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (dead_) {
      for (size_t i = 0; i < n; i++) reqs[i].p.result = dead_;
      counters.errors++;
      return dead_;
    }
    for (size_t i = 0; i < n; i++) {
      Req& q = reqs[i];
      q.p.op = q.op;
      q.p.w = &w;
      q.p.result = 0;
      q.p.len = q.op == T_READ ? q.count * kPage : 0;
      uint32_t id = nextId_++;
      if (!nextId_) nextId_ = 1;
      q.id = id;
      pending_[id] = &q.p;
    }
  }
  {
    std::lock_guard<std::mutex> l(sendMu_);
    RawBuf& out = txbuf_;
    out.clear();
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
      Req& q = reqs[i];
      uint32_t hl = HeadLen(q.op), dl = q.op == T_WRITE ? q.count * kPage : 0, len = hl + dl;
      uint8_t head[kAttachReq];
      Put32(head, q.id);
      if (q.op == T_ALLOC || q.op == T_FREE || q.op == T_RENEW) Put64(head + 4, q.a);
      if (q.op == T_ATTACH_RDMA) {
        Put64(head + 4, region_);
        memcpy(head + 12, q.data, kEndpoint);
      }
      if (q.op == T_READ || q.op == T_WRITE) {
        Put64(head + 4, region_);
        Put64(head + 12, q.a);
        Put32(head + 20, q.count);
      }
      uint8_t* f = out.Append(kHeader + len + (tls_ ? 0 : kTag));
      PutHeader(f, len, q.op);
      if (tls_) {  // TLS seals the stream: one encryption layer
        memcpy(f + kHeader, head, hl);
        if (dl) memcpy(f + kHeader + hl, q.data, dl);
      } else {
        tx_.Begin(f, kHeader);
        tx_.Update(head, f + kHeader, hl);
        tx_.Update(q.data, f + kHeader + hl, dl);
        tx_.FinishSeal(f + kHeader + len);
      }
      counters.requests++;
      counters.bytesOut += dl;
      if (out.size() >= (256u << 10) || i + 1 == n) {
        ok = SendAll(out.data(), out.size());
        out.clear();
      }
    }
    if (!ok) Fail(-ECONNRESET);
  }
  // Whoever waits reads: one waiter at a time is the reader and completes
  // every reply that arrives (its own and others') until its own are in,
  // then hands the role to another waiter. A reply thus wakes at most one
  // thread, the one blocked in recv, instead of a receiver thread and then
  // its caller.
  std::unique_lock<std::mutex> l(mu_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs_);
  while (w.remaining) {
    if (!reading_ && !dead_) {
      reading_ = true;
      l.unlock();
      int e = ReceiveOne();
      if (e) Fail(e);
      l.lock();
      reading_ = false;
      continue;
    }
    waiting_.push_back(&w);
    bool woke = w.cv.wait_until(l, deadline, [&] { return w.remaining == 0 || (!reading_ && !dead_); });
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), &w));
    if (!woke) {
      l.unlock();
      Fail(-ETIMEDOUT);  // completes every pending request, ours too; the reader's recv returns
      l.lock();
    }
  }
  if (!reading_ && !waiting_.empty()) waiting_.front()->cv.notify_all();  // the next reader
  int first = 0;
  for (size_t i = 0; i < n; i++)
    if (reqs[i].p.result < 0 && !first) first = reqs[i].p.result;
  if (first) counters.errors++;
  return first;
}

// Read one reply and complete its request (the caller is the reader: see
// Run). 0, or the errno that ends the connection.
int RemoteSource::ReceiveOne() {
  auto lost = [] { return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -ECONNRESET; };
  if (!Buffered(kHeader)) return lost();
  uint8_t* b = rxbuf_.data() + rxPos_;
  uint32_t len = Get32(b);
  uint16_t type = Get16(b + 4);
  if (!(type & T_REPLY) || len < kReplyHead || len > kReplyHead + kMaxBatch * kPage || Get16(b + 6)) return -EBADMSG;
  const size_t tag = tls_ ? 0 : kTag;
  if (!Buffered(kHeader + len + tag)) return lost();
  b = rxbuf_.data() + rxPos_;
  rxPos_ += kHeader + len + tag;
  // The body's bytes from `at`, opened (or, over TLS, copied) into dst.
  auto open = [&](size_t at, uint8_t* dst, size_t n) {
    if (!tls_) return rx_.Update(b + kHeader + at, dst, n);
    memcpy(dst, b + kHeader + at, n);
    return true;
  };
  uint8_t head[kReplyHead];
  if ((!tls_ && !rx_.Begin(b, kHeader)) || !open(0, head, kReplyHead)) return -EBADMSG;
  uint32_t id = Get32(head), status = Get32(head + 4);
  Pending* p = nullptr;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = pending_.find(id);
    if (it != pending_.end()) {
      p = it->second;
      pending_.erase(it);  // claimed: only this thread completes it now
    }
  }
  if (!p) return -ECONNRESET;  // a reply nobody asked for: the stream is not to be trusted
  uint32_t rest = len - kReplyHead;
  int result = StatusErrno(status);
  bool ok = (type & 0x7f) == p->op;
  if (ok && p->op == T_READ && status == S_OK) {
    ok = rest == p->len && open(kReplyHead, p->buf, rest);
  } else if (ok) {
    ok = rest <= sizeof p->extra && open(kReplyHead, p->extra, rest);
    p->extraLen = rest;
  }
  ok = ok && (tls_ || rx_.FinishOpen(b + kHeader + len));
  if (ok && p->op == T_READ && status == S_OK) counters.bytesIn += rest;
  {
    std::lock_guard<std::mutex> l(mu_);
    p->result = ok ? result : -EBADMSG;
    if (--p->w->remaining == 0) p->w->cv.notify_all();
  }
  return ok ? 0 : -EBADMSG;
}

void RemoteSource::Renew() {
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      uint32_t every = std::max<uint32_t>(leaseMs_ / 3, 10);
      if (stopCv_.wait_for(l, std::chrono::milliseconds(every), [&] { return dead_ != 0; })) return;
    }
    Req q{};
    q.op = T_RENEW;
    q.a = region_;
    int r = Run(&q, 1);
    if (r == -ENOENT) Fail(-ENOENT);  // the lease lapsed: nothing left to serve
    if (r < 0) return;
    counters.renewals++;
  }
}

int RemoteSource::Ranges(uint16_t op, Io* ios, size_t n) {
  std::vector<Req> reqs;
  std::vector<size_t> owner;
  for (size_t i = 0; i < n; i++) {
    Io& io = ios[i];
    io.result = 0;
    if (io.off % kPage || io.len % kPage) {
      io.result = -EINVAL;
      continue;
    }
    uint64_t first = io.off / kPage, count = io.len / kPage;
    uint8_t* p = static_cast<uint8_t*>(io.buf);
    if (op == T_WRITE && (first > pages_ || count > pages_ - first)) {
      io.result = -ERANGE;
      continue;
    }
    for (uint64_t done = 0; done < count;) {
      uint64_t pg = first + done;
      uint64_t k = std::min<uint64_t>(count - done, kMaxBatch);
      if (pg >= pages_) {  // past the region: zeros, as for every source
        memset(p + done * kPage, 0, (count - done) * kPage);
        break;
      }
      k = std::min<uint64_t>(k, pages_ - pg);
      Req q{};
      q.op = op;
      q.a = pg;
      q.count = static_cast<uint32_t>(k);
      q.p.buf = p + done * kPage;
      q.data = op == T_WRITE ? p + done * kPage : nullptr;
      reqs.push_back(q);
      owner.push_back(i);
      done += k;
    }
  }
  if (!reqs.empty()) Run(reqs.data(), reqs.size());
  int first = 0;
  for (size_t j = 0; j < reqs.size(); j++)
    if (reqs[j].p.result < 0 && !ios[owner[j]].result) ios[owner[j]].result = reqs[j].p.result;
  for (size_t i = 0; i < n; i++)
    if (ios[i].result < 0 && !first) first = ios[i].result;
  return first;
}

int RemoteSource::FetchV(Io* ios, size_t n) { return Ranges(T_READ, ios, n); }
int RemoteSource::StoreV(Io* ios, size_t n) { return Ranges(T_WRITE, ios, n); }

int RemoteSource::Fetch(uint64_t off, void* buf, uint64_t len) {
  if (off % kPage == 0 && len % kPage == 0) {
    Io io{off, buf, len, 0};
    return Ranges(T_READ, &io, 1);
  }
  // Not page-aligned (diagnostic reads): through a bounce buffer of whole pages.
  uint64_t a = off / kPage * kPage, e = (off + len + kPage - 1) / kPage * kPage;
  Bytes bounce(e - a);
  Io io{a, bounce.data(), e - a, 0};
  int r = Ranges(T_READ, &io, 1);
  if (r == 0) memcpy(buf, bounce.data() + (off - a), len);
  return r;
}

int RemoteSource::Store(uint64_t off, const void* buf, uint64_t len) {
  Io io{off, const_cast<void*>(buf), len, 0};
  return Ranges(T_WRITE, &io, 1);
}

int RemoteSource::AttachRdma(const uint8_t* endpoint, uint8_t* out) {
  Req q{};
  q.op = T_ATTACH_RDMA;
  q.data = endpoint;
  int r = Run(&q, 1);
  if (r == 0 && q.p.extraLen != kAttachReply) r = -EPROTO;
  if (r == 0) memcpy(out, q.p.extra, kAttachReply);
  return r;
}

int RemoteSource::RemoteStats(uint64_t out[4]) {
  Req q{};
  q.op = T_STATS;
  int r = Run(&q, 1);
  if (r == 0)
    for (int i = 0; i < 4; i++) out[i] = Get64(q.p.extra + 8 * i);
  return r;
}

}  // namespace sos::mem
