#include "memory/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "memory/frame.h"

namespace sos::mem {

static int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// DRAIN: refused in the TLS handshake; input is read and dropped until the client closes or
// kDrainMs pass, so that closing sends a FIN and not a reset, which could overtake the alert that
// tells the client why.
enum Phase { HELLO, PROOF, AUTH, CLOSING, DRAIN };
static constexpr int64_t kDrainMs = 1000;

struct Server::Conn {
  int fd = -1;
  Phase phase = HELLO;
  int64_t deadline = 0;
  std::string peer, app;
  uint8_t cn[kNonce], sn[kNonce];
  Bytes ch, sh;  // both hellos' bodies as sent
  Gcm rx, tx;
  Bytes in;
  size_t inLen = 0;
  std::deque<RawBuf> out;
  size_t outOff = 0, outBytes = 0;
  uint32_t events = 0;
  bool registered = false;
  std::unique_ptr<TlsSession> tls;                      // TLS mode: the session (frames unsealed inside it)
  bool hsWantsWrite = false;                            // the TLS handshake waits for the socket to take more
  bool readWantsWrite = false, writeWantsRead = false;  // SSL_read needs writability, SSL_write readability
  // Reading stopped before SSL said it wants the socket: records it has read ahead may wait in its
  // buffer, and the socket will not signal them.
  bool tlsMore = false;
};

static constexpr size_t kPreAuthIn = 2 * kHeader + kMaxClientHello + kProof;
static constexpr size_t kAuthIn = kHeader + kMaxBody + kTag;
static constexpr size_t kSpare = 8;  // output buffers kept for reuse, across connections

Server::Server(const ServerOptions& o) : opt_(o), store_(o.capacityPages), rdma_(o.rdma), dummy_(32), tls_(o.tls) {
  store_.OnDrop([this](uint64_t id) { rdma_.DropRegion(id); });
  RandomBytes(dummy_.data(), dummy_.size());
  scratch_.resize(kMaxBody);
}

Server::~Server() { Stop(); }

void Server::Log(const std::string& line) {
  if (log_.size() >= 64) log_.pop_front();
  log_.push_back(line);
  if (getenv("SOS_MEMORY_LOG")) fprintf(stderr, "memory-node: %s\n", line.c_str());
}

int Server::Listen(const std::string& host, uint16_t port, std::string* boundHost, uint16_t* boundPort) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  std::string ps = std::to_string(port);
  int g = getaddrinfo(host.empty() ? nullptr : host.c_str(), ps.c_str(), &hints, &res);
  if (g != 0) return -EADDRNOTAVAIL;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return -errno;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    int e = errno;
    freeaddrinfo(res);
    close(fd);
    return -e;
  }
  freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
  char hb[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, hb, sizeof hb);
    *boundPort = ntohs(a->sin_port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, hb, sizeof hb);
    *boundPort = ntohs(a->sin6_port);
  }
  *boundHost = hb;
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  listen_ = fd;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, listen_, &ev);
  ev.data.fd = wake_;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
  thread_ = std::thread([this] { Loop(); });
  return 0;
}

void Server::Stop() {
  if (stop_.exchange(true)) return;
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(wake_, &one, sizeof one);
    thread_.join();
  }
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [fd, c] : conns_) {
    rdma_.DropConnection(fd);
    close(fd);
  }
  conns_.clear();
  if (listen_ >= 0) close(listen_);
  if (epoll_ >= 0) close(epoll_);
  if (wake_ >= 0) close(wake_);
  listen_ = epoll_ = wake_ = -1;
}

void Server::SetTls(std::shared_ptr<TlsContext> tls) {
  std::lock_guard<std::mutex> l(mu_);
  tls_ = std::move(tls);
}

void Server::AddApplication(const std::string& name, Bytes secret) {
  std::lock_guard<std::mutex> l(mu_);
  apps_[name] = std::move(secret);
  store_.app(name);  // its counters exist from now on
}

bool Server::RemoveApplication(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  bool had = apps_.erase(name) > 0;
  std::vector<Conn*> drop;
  for (auto& [fd, c] : conns_)
    if (c->phase == AUTH && c->app == name) drop.push_back(c.get());
  for (Conn* c : drop) CloseConn(c);
  store_.FreeAll(name);
  return had;
}

Server::Snapshot Server::Stats() {
  std::lock_guard<std::mutex> l(mu_);
  Snapshot s;
  s.capacity = store_.capacity();
  s.reserved = store_.reserved();
  s.connections = conns_.size();
  s.unauthenticated = unauth_;
  s.badFrames = badFrames_;
  s.refusedConnections = refused_;
  s.expired = expired_;
  s.rdmaExports = rdma_.size();
  s.tlsRefused = tlsRefused_;
  s.total = store_.total();
  s.apps = store_.apps();
  s.log.assign(log_.begin(), log_.end());
  return s;
}

void Server::Loop() {
  epoll_event evs[64];
  while (!stop_) {
    int64_t now = NowMs();
    int timeout = 1000;
    {
      std::lock_guard<std::mutex> l(mu_);
      int64_t next = store_.NextExpiry();
      for (auto& [fd, c] : conns_) {
        if (c->phase != AUTH && c->deadline < next) next = c->deadline;
        if (c->tlsMore && c->phase != CLOSING && c->outBytes < opt_.outHigh) next = now;  // see below
      }
      if (next != INT64_MAX) timeout = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(1000, next - now + 1)));
    }
    int n = epoll_wait(epoll_, evs, 64, timeout);
    if (n < 0 && errno != EINTR) break;
    std::lock_guard<std::mutex> l(mu_);
    now = NowMs();
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == wake_) {
        uint64_t v;
        (void)!read(wake_, &v, sizeof v);
        continue;
      }
      if (fd == listen_) {
        Accept(now);
        continue;
      }
      auto it = conns_.find(fd);
      if (it == conns_.end()) continue;
      Conn* c = it->second.get();
      if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
        // A client that gives up in the TLS handshake (our certificate refused) may reset the
        // connection: its alert, or the reset, is still read, counted and logged as a refusal.
        if (c->tls && !c->tls->handshakeDone())
          OnReadable(c, now);
        else
          CloseConn(c);
        continue;
      }
      if (evs[i].events & EPOLLOUT) {
        if (c->readWantsWrite) {
          c->readWantsWrite = false;
          OnReadable(c, now);
        } else {
          OnWritable(c);
        }
      }
      if (conns_.count(fd) && c->writeWantsRead && (evs[i].events & EPOLLIN)) {
        c->writeWantsRead = false;
        OnWritable(c);
      }
      if (conns_.count(fd) && (evs[i].events & EPOLLIN)) OnReadable(c, now);
    }
    // Records SSL holds (reading stopped at the output bound) do not make the socket readable
    // again: read them once the replies have drained.
    std::vector<int> pending;
    for (auto& [fd, c] : conns_)
      if (c->tlsMore && c->phase != CLOSING && c->outBytes < opt_.outHigh && c->inLen < c->in.size())
        pending.push_back(fd);
    for (int fd : pending)
      if (conns_.count(fd)) OnReadable(conns_[fd].get(), now);
    std::vector<Conn*> late;
    for (auto& [fd, c] : conns_)
      if (c->phase != AUTH && c->deadline <= now) late.push_back(c.get());
    for (Conn* c : late) {
      if (c->phase != DRAIN) Log("connection from " + c->peer + ": handshake deadline passed");
      CloseConn(c);
    }
    expired_ += store_.Expire(now);
  }
}

void Server::Accept(int64_t now) {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    int fd = accept4(listen_, reinterpret_cast<sockaddr*>(&ss), &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (unauth_ >= opt_.maxUnauthenticated) {
      refused_++;
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->deadline = now + opt_.handshakeMs;
    char hb[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, hb, sizeof hb);
    else if (ss.ss_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, hb, sizeof hb);
    c->peer = hb;
    if (tls_) {
      std::string err;
      c->tls = TlsSession::Make(tls_, fd, &err);
      if (!c->tls) {
        tlsRefused_++;
        Log("connection from " + c->peer + ": refused, " + err);
        close(fd);
        continue;
      }
    }
    c->in.resize(kPreAuthIn);
    unauth_++;
    Conn* p = c.get();
    conns_[fd] = std::move(c);
    UpdateInterest(p);
  }
}

void Server::UpdateInterest(Conn* c) {
  uint32_t want = 0;
  if (c->tls && !c->tls->handshakeDone()) {
    want = c->hsWantsWrite && c->phase != DRAIN ? EPOLLOUT : EPOLLIN;
  } else {
    if ((c->phase != CLOSING && c->outBytes < opt_.outHigh) || c->writeWantsRead) want |= EPOLLIN;
    if (c->outBytes || c->readWantsWrite || (c->tls && c->tls->Unflushed())) want |= EPOLLOUT;
  }
  if (c->registered && want == c->events) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = c->fd;
  epoll_ctl(epoll_, c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
  c->registered = true;
  c->events = want;
}

void Server::CloseConn(Conn* c) {
  if (c->phase != AUTH) unauth_--;
  int fd = c->fd;
  rdma_.DropConnection(fd);
  close(fd);  // also leaves the epoll set
  conns_.erase(fd);
}

void Server::Bad(Conn* c, const std::string& why) {
  badFrames_++;
  if (c->phase == AUTH) {
    store_.app(c->app).errors++;
    store_.total().errors++;
  }
  Log("connection from " + c->peer + (c->app.empty() ? "" : " (" + c->app + ")") + " closed: " + why);
  CloseConn(c);
}

bool Server::TlsStep(Conn* c) {
  TlsStatus st = c->tls->Handshake();
  if (st == TlsStatus::kOk) return true;
  if (st == TlsStatus::kWantRead || st == TlsStatus::kWantWrite) {
    c->hsWantsWrite = st == TlsStatus::kWantWrite;
    UpdateInterest(c);
    return false;
  }
  // No certificate, another CA's or cluster's, revoked, or not TLS at all: no frame was read of it.
  tlsRefused_++;
  Log("connection from " + c->peer + ": TLS refused: " + c->tls->error());
  c->phase = DRAIN;
  c->deadline = std::min(c->deadline, NowMs() + kDrainMs);
  shutdown(c->fd, SHUT_WR);
  UpdateInterest(c);
  return false;
}

void Server::Drain(Conn* c) {
  uint8_t sink[4096];
  for (;;) {
    ssize_t r = recv(c->fd, sink, sizeof sink, 0);
    if (r > 0 || (r < 0 && errno == EINTR)) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    CloseConn(c);
    return;
  }
}

void Server::OnReadable(Conn* c, int64_t now) {
  int fd = c->fd;
  if (c->phase == DRAIN) return Drain(c);
  if (c->tls && !c->tls->handshakeDone() && !TlsStep(c)) return;
  c->tlsMore = c->tls != nullptr;
  for (;;) {
    if (c->inLen == c->in.size()) break;  // a whole frame is at most the buffer: process first
    ssize_t r;
    if (c->tls) {
      size_t got = 0;
      TlsStatus st = c->tls->Read(c->in.data() + c->inLen, c->in.size() - c->inLen, &got);
      if (st == TlsStatus::kWantRead || st == TlsStatus::kWantWrite) {
        c->tlsMore = false;  // SSL is drained: the socket signals the rest
        c->readWantsWrite = st == TlsStatus::kWantWrite;
        break;
      }
      if (st == TlsStatus::kFailed) {
        Log("connection from " + c->peer + (c->app.empty() ? "" : " (" + c->app + ")") + " closed: " + c->tls->error());
        CloseConn(c);
        return;
      }
      r = st == TlsStatus::kOk ? static_cast<ssize_t>(got) : 0;
    } else {
      r = recv(fd, c->in.data() + c->inLen, c->in.size() - c->inLen, 0);
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      CloseConn(c);
      return;
    }
    if (r == 0) {
      if (c->phase == AUTH && c->inLen) Log("connection from " + c->peer + " (" + c->app + ") ended inside a frame");
      CloseConn(c);
      return;
    }
    c->inLen += static_cast<size_t>(r);
    Process(c, now);
    if (!conns_.count(fd) || conns_[fd].get() != c) return;
    if (c->phase == CLOSING || c->outBytes >= opt_.outHigh) break;
  }
  // Replies go out now, not after another epoll round (the socket is
  // usually writable): saves a wakeup and two epoll_ctl per request.
  if (c->outBytes || (c->tls && c->tls->Unflushed())) return OnWritable(c);
  UpdateInterest(c);
}

void Server::OnWritable(Conn* c) {
  if (c->phase == DRAIN) return;
  if (c->tls && !c->tls->handshakeDone()) {
    // The client speaks first after the handshake; what it sent may already be in SSL's buffer.
    if (TlsStep(c)) OnReadable(c, NowMs());
    return;
  }
  while (!c->out.empty()) {
    RawBuf& b = c->out.front();
    ssize_t w;
    if (c->tls) {
      size_t put = 0;
      TlsStatus st = c->tls->Write(b.data() + c->outOff, b.size() - c->outOff, &put);
      if (st == TlsStatus::kWantWrite) break;
      if (st == TlsStatus::kWantRead) {
        c->writeWantsRead = true;
        break;
      }
      if (st != TlsStatus::kOk) {
        CloseConn(c);
        return;
      }
      w = static_cast<ssize_t>(put);
    } else {
      w = send(c->fd, b.data() + c->outOff, b.size() - c->outOff, MSG_NOSIGNAL);
    }
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      CloseConn(c);
      return;
    }
    c->outOff += static_cast<size_t>(w);
    c->outBytes -= static_cast<size_t>(w);
    if (c->outOff == b.size()) {
      if (spare_.size() < kSpare) {
        b.clear();
        spare_.push_back(std::move(b));
      }
      c->out.pop_front();
      c->outOff = 0;
    }
  }
  // Over TLS the records SSL made are sent in as few pieces as the socket takes.
  if (c->tls && c->tls->Flush() == TlsStatus::kFailed) {
    CloseConn(c);
    return;
  }
  if (c->phase == CLOSING && c->out.empty() && !(c->tls && c->tls->Unflushed())) {
    CloseConn(c);
    return;
  }
  int fd = c->fd;
  // Replies drained below the bound: frames left in the input buffer may run now.
  if (c->phase == AUTH && c->inLen && c->outBytes < opt_.outHigh) Process(c, NowMs());
  if (conns_.count(fd)) UpdateInterest(c);
}

void Server::Process(Conn* c, int64_t now) {
  int fd = c->fd;
  size_t pos = 0;
  while (c->phase != CLOSING && c->outBytes < opt_.outHigh) {
    size_t avail = c->inLen - pos;
    if (avail < kHeader) break;
    const uint8_t* h = c->in.data() + pos;
    WirePhase wp = c->phase == AUTH ? WirePhase::kAuth : c->phase == PROOF ? WirePhase::kProof : WirePhase::kHello;
    FrameHeader fh;
    HeaderFault hf = ParseHeader(h, wp, &fh);
    if (hf != HeaderFault::kNone) return Bad(c, HeaderFaultText(hf, fh));
    size_t whole = FrameBytes(fh, wp, !c->tls);
    if (avail < whole) break;
    if (wp != WirePhase::kAuth) {
      if (!Handshake(c, fh.type, h + kHeader, fh.len)) return;
      pos += whole;
      continue;
    }
    // Over TLS the record layer has authenticated the bytes already: the body is read in place.
    const uint8_t* body = h + kHeader;
    if (!c->tls) {
      uint8_t* open = scratch_.data();
      if (!c->rx.Begin(h, kHeader) || !c->rx.Update(h + kHeader, open, fh.len) ||
          !c->rx.FinishOpen(h + kHeader + fh.len))
        return Bad(c, "frame failed authentication (tampered, replayed, reordered or dropped)");
      body = open;
    }
    if (!Request(c, fh.type, body, fh.len, now)) return;
    pos += whole;
  }
  if (!conns_.count(fd)) return;
  if (pos) {
    memmove(c->in.data(), c->in.data() + pos, c->inLen - pos);
    c->inLen -= pos;
  }
}

bool Server::Handshake(Conn* c, uint16_t type, const uint8_t* b, uint32_t len) {
  if (type == T_CLIENT_HELLO) {
    ClientHello hello;
    HelloFault f = ParseClientHello(b, len, &hello);
    if (f == HelloFault::kMagic) {
      Bad(c, "bad magic in the client hello");
      return false;
    }
    if (f == HelloFault::kVersion) {
      Log("connection from " + c->peer + ": refused, version " + std::to_string(hello.version));
      uint8_t st[4];
      Put32(st, S_VERSION);
      SendClear(c, T_REFUSE, st, 4);
      c->phase = CLOSING;
      return false;
    }
    if (f != HelloFault::kNone) {
      Bad(c, "malformed client hello");
      return false;
    }
    c->app.assign(reinterpret_cast<const char*>(hello.name), hello.nameLen);
    memcpy(c->cn, hello.nonce, kNonce);
    c->ch.assign(b, b + len);
    RandomBytes(c->sn, kNonce);
    uint8_t sh[kServerHello];
    Put32(sh, kMagic);
    Put16(sh + 4, kVersion);
    memcpy(sh + 6, c->sn, kNonce);
    c->sh.assign(sh, sh + sizeof sh);
    SendClear(c, T_SERVER_HELLO, sh, sizeof sh);
    c->phase = PROOF;
    return true;
  }
  // T_PROOF. Looked up now, so an application removed meanwhile is refused.
  auto it = apps_.find(c->app);
  const Bytes& secret = it == apps_.end() ? dummy_ : it->second;
  uint8_t want[32];
  Proof(secret, "client", c->ch.data(), c->ch.size(), c->sh.data(), c->sh.size(), want);
  if (!ProofEqual(want, b) || it == apps_.end()) {
    store_.total().authFailures++;
    if (it != apps_.end()) store_.app(c->app).authFailures++;
    Log("connection from " + c->peer + ": authentication refused");
    uint8_t st[4];
    Put32(st, S_AUTH);
    SendClear(c, T_REFUSE, st, 4);
    c->phase = CLOSING;
    return false;
  }
  uint8_t sp[32], k1[32], k2[32];
  Proof(secret, "server", c->ch.data(), c->ch.size(), c->sh.data(), c->sh.size(), sp);
  if (!c->tls) {
    DeriveKey(secret, c->cn, c->sn, "client-to-server", k1);
    DeriveKey(secret, c->cn, c->sn, "server-to-client", k2);
    c->rx.SetKey(k1, false);
    c->tx.SetKey(k2, true);
  }
  SendClear(c, T_PROOF, sp, 32);
  c->phase = AUTH;
  unauth_--;
  Bytes big(kAuthIn);
  memcpy(big.data(), c->in.data(), c->inLen);
  c->in.swap(big);
  return true;
}

// Room for n more bytes at the end of c's output queue. Frames share a
// buffer up to kCoalesce, so a batch of small replies leaves in one send
// (one segment, one wakeup of the client's reader) instead of one each.
static constexpr size_t kCoalesce = 256 << 10;
uint8_t* Server::OutSpace(Conn* c, size_t n) {
  if (c->out.empty() || c->out.back().size() + n > std::max(kCoalesce, c->out.back().capacity())) {
    if (spare_.empty()) {
      c->out.emplace_back();
    } else {
      c->out.push_back(std::move(spare_.back()));
      spare_.pop_back();
    }
    c->out.back().Reserve(std::max(n, kCoalesce));
  }
  c->outBytes += n;
  return c->out.back().Append(n);
}

void Server::SendClear(Conn* c, uint16_t type, const uint8_t* body, uint32_t len) {
  uint8_t* f = OutSpace(c, kHeader + len);
  PutHeader(f, len, type);
  memcpy(f + kHeader, body, len);
}

void Server::SendFrame(Conn* c, uint16_t type, const uint8_t* head, uint32_t headLen, const uint8_t* data,
                       uint32_t dataLen) {
  uint32_t len = headLen + dataLen;
  uint8_t* f = OutSpace(c, kHeader + len + (c->tls ? 0 : kTag));
  PutHeader(f, len, type);
  if (c->tls) {
    memcpy(f + kHeader, head, headLen);
    if (dataLen) memcpy(f + kHeader + headLen, data, dataLen);
    return;
  }
  c->tx.Begin(f, kHeader);
  c->tx.Update(head, f + kHeader, headLen);
  c->tx.Update(data, f + kHeader + headLen, dataLen);
  c->tx.FinishSeal(f + kHeader + len);
}

void Server::Reply(Conn* c, uint16_t op, uint32_t id, uint32_t status, const uint8_t* extra, uint32_t extraLen) {
  uint8_t head[kReplyHead + kMaxReplyExtra];
  Put32(head, id);
  Put32(head + 4, status);
  if (extraLen) memcpy(head + kReplyHead, extra, extraLen);
  if (status != S_OK) {
    store_.app(c->app).errors++;
    store_.total().errors++;
  }
  SendFrame(c, op | T_REPLY, head, kReplyHead + extraLen, nullptr, 0);
}

bool Server::Request(Conn* c, uint16_t type, const uint8_t* b, uint32_t len, int64_t now) {
  Counters& ac = store_.app(c->app);
  Counters& tc = store_.total();
  ac.requests++;
  tc.requests++;
  ParsedRequest q;
  RequestFault f = ParseRequest(type, b, len, &q);
  if (f != RequestFault::kNone) {
    Bad(c, RequestFaultText(f, type, len, q));
    return false;
  }
  uint32_t id = q.id;
  switch (type) {
    case T_ALLOC: {
      uint64_t rid = 0;
      Status s = store_.Alloc(c->app, q.pages, now + opt_.leaseMs, &rid);
      uint8_t x[20];
      Put64(x, rid);
      Put64(x + 8, s == S_OK ? q.pages : 0);
      Put32(x + 16, opt_.leaseMs);
      if (s == S_FULL) Log(c->app + ": ALLOC of " + std::to_string(q.pages) + " pages refused, node full");
      Reply(c, type, id, s, x, 20);
      return true;
    }
    case T_READ:
    case T_WRITE: {
      Region* r = store_.Find(c->app, q.region);
      if (!r) {
        Reply(c, type, id, S_NO_REGION);
        return true;
      }
      if (!RangeWithin(q.first, q.count, r->pages)) {
        Reply(c, type, id, S_RANGE);
        return true;
      }
      uint8_t head[kReplyHead];
      Put32(head, id);
      Put32(head + 4, S_OK);
      if (type == T_READ) {
        SendFrame(c, T_READ | T_REPLY, head, kReplyHead, r->base + q.first * kPage, q.count * kPage);
        ac.bytesOut += uint64_t(q.count) * kPage;
        tc.bytesOut += uint64_t(q.count) * kPage;
      } else {
        memcpy(r->base + q.first * kPage, q.data, q.dataLen);
        store_.MarkWritten(r, q.first, q.count);
        ac.bytesIn += q.dataLen;
        tc.bytesIn += q.dataLen;
        SendFrame(c, T_WRITE | T_REPLY, head, kReplyHead, nullptr, 0);
      }
      return true;
    }
    case T_FREE:
    case T_RENEW: {
      if (type == T_FREE) {
        Reply(c, type, id, store_.Free(c->app, q.region));
        return true;
      }
      Region* r = store_.Find(c->app, q.region);
      if (r) r->expiresMs = now + opt_.leaseMs;
      uint8_t x[4];
      Put32(x, opt_.leaseMs);
      Reply(c, type, id, r ? S_OK : S_NO_REGION, x, 4);
      return true;
    }
    case T_ATTACH_RDMA: {
      Region* r = store_.Find(c->app, q.region);
      if (!r) {
        Reply(c, type, id, S_NO_REGION);
        return true;
      }
      uint8_t x[kAttachReply] = {};
      std::string why;
      Status s = rdma_.Attach(c->fd, *r, q.endpoint, x, &why);
      if (s != S_OK) Log(c->app + ": RDMA attach refused: " + why);
      // One-sided writes bypass the node: every page counts as held from now.
      if (s == S_OK) store_.MarkWritten(r, 0, r->pages);
      Reply(c, type, id, s, x, s == S_OK ? kAttachReply : 0);
      return true;
    }
    case T_STATS: {
      uint8_t x[32];
      Put64(x, store_.capacity());
      Put64(x + 8, ac.reservedPages);
      Put64(x + 16, ac.heldPages);
      Put64(x + 24, ac.regions);
      Reply(c, type, id, S_OK, x, 32);
      return true;
    }
  }
  // ParseRequest accepts only the types above.
  Bad(c, RequestFaultText(RequestFault::kLength, type, len, q));
  return false;
}

}  // namespace sos::mem
