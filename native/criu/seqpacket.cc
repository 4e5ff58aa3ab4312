#include "criu/seqpacket.h"

#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "core/common.h"
#include "core/fd_events.h"

namespace sos {
namespace {

constexpr size_t kMaxMessage = 64u << 20;  // far above any CRIU message; bounds a hostile peer

class SeqPacketWrap : public Napi::ObjectWrap<SeqPacketWrap>, public Closable {
 public:
  static const napi_type_tag kTag;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "NativeSeqPacket",
        {InstanceMethod("peerFd", &SeqPacketWrap::PeerFd), InstanceMethod("closePeer", &SeqPacketWrap::ClosePeer),
         InstanceMethod("send", &SeqPacketWrap::Send), InstanceMethod("recv", &SeqPacketWrap::Recv),
         InstanceMethod("close", &SeqPacketWrap::Close), InstanceMethod("isClosed", &SeqPacketWrap::IsClosed)});
  }

  explicit SeqPacketWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SeqPacketWrap>(info) {
    Napi::Env env = info.Env();
    info.This().As<Napi::Object>().TypeTag(&kTag);
    int sv[2];
    // Both ends close-on-exec: a spawn hands the peer over explicitly (dup2
    // clears the flag on the copy), no other child inherits either end.
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
      ThrowSys(env, "socketpair", errno);
      return;
    }
    // Only our end is non-blocking: O_NONBLOCK lives on the open file, and the
    // peer's reader (CRIU) expects blocking reads.
    if (!SetNonBlocking(env, sv[0])) {
      close(sv[0]);
      close(sv[1]);
      return;
    }
    fd_ = sv[0];
    peer_ = sv[1];
    Track(env, this);
  }
  ~SeqPacketWrap() override { DoClose(); }

  int CloseRank() const override { return 40; }
  void CloseForTeardown() override { DoClose(); }

 private:
  bool Live(Napi::Env env) {
    if (fd_ >= 0) return true;
    ThrowState(env, "ERR_CLOSED", "SeqPacket is closed");
    return false;
  }

  Napi::Value PeerFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (peer_ < 0) {
      ThrowState(env, "ERR_CLOSED", "the peer end was already handed over and closed");
      return env.Undefined();
    }
    return Napi::Number::New(env, peer_);
  }

  Napi::Value ClosePeer(const Napi::CallbackInfo& info) {
    if (peer_ >= 0) close(peer_);
    peer_ = -1;
    return info.Env().Undefined();
  }

  // send(bytes): one message. Returns the bytes sent; EAGAIN when the peer's
  // queue is full (small request/response protocols never get there).
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (!info[0].IsTypedArray() && !info[0].IsArrayBuffer()) {
      ThrowType(env, "data must be a Buffer, a Uint8Array or an ArrayBuffer");
      return env.Undefined();
    }
    const char* p;
    size_t n;
    if (info[0].IsArrayBuffer()) {
      auto ab = info[0].As<Napi::ArrayBuffer>();
      p = static_cast<const char*>(ab.Data());
      n = ab.ByteLength();
    } else {
      auto ta = info[0].As<Napi::TypedArray>();
      p = static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
      n = ta.ByteLength();
    }
    if (n > kMaxMessage) {
      ThrowRange(env, "message larger than 64 MiB");
      return env.Undefined();
    }
    ssize_t r;
    do r = send(fd_, p, n, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      ThrowSys(env, "send", errno);
      return env.Undefined();
    }
    return Napi::Number::New(env, static_cast<double>(r));
  }

  // recv(): Promise<Buffer | null> of the next whole message; null once the
  // peer has closed. One receive at a time.
  Napi::Value Recv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Live(env)) return env.Undefined();
    if (pending_) {
      ThrowState(env, "ERR_BUSY", "a recv() is already pending");
      return env.Undefined();
    }
    auto d = Napi::Promise::Deferred::New(env);
    deferred_ = std::make_unique<Napi::Promise::Deferred>(d);
    pending_ = true;
    self_ = Napi::Persistent(info.This().As<Napi::Object>());  // alive while awaited
    TryRead(env);
    if (pending_ && !events_.watching()) {
      if (!events_.Watch(env, fd_, [this] { OnReadable(); })) {
        Napi::Error e = env.GetAndClearPendingException();
        Settle(env, nullptr, &e);
      }
    }
    return d.Promise();
  }

  // From the libuv poll, outside any JS call: a callback scope, so the
  // promise's continuations (microtasks) run when it closes, not whenever
  // something else next enters JS.
  void OnReadable() {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (!asyncCtx_) asyncCtx_ = std::make_unique<Napi::AsyncContext>(env, "sos:seqpacket");
    Napi::CallbackScope cb(env, *asyncCtx_);
    TryRead(env);
  }

  // Reads one message if there is one; settles the pending promise.
  void TryRead(Napi::Env env) {
    if (!pending_ || fd_ < 0) return;
    ssize_t size;
    do size = recv(fd_, nullptr, 0, MSG_PEEK | MSG_TRUNC);
    while (size < 0 && errno == EINTR);
    if (size < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // wait for the poll
    if (size < 0) {
      Napi::Error e = MakeSys(env, "recv", errno);
      Settle(env, nullptr, &e);
      return;
    }
    if (static_cast<size_t>(size) > kMaxMessage) {
      // Drop it so the stream stays usable, and say why.
      recv(fd_, nullptr, 0, MSG_TRUNC);
      Napi::Error e = MakeSys(env, "recv", EMSGSIZE, "message larger than 64 MiB dropped");
      Settle(env, nullptr, &e);
      return;
    }
    std::vector<char> buf(static_cast<size_t>(size) + 1);
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    struct iovec iov = {buf.data(), buf.size()};
    struct msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    ssize_t r;
    do r = recvmsg(fd_, &mh, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // Descriptors passed along (CRIU's orphan-pts-master) are not used here:
    // close them rather than leak them.
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const int* fds = reinterpret_cast<const int*>(CMSG_DATA(c));
      for (size_t i = 0; i < nfds; i++) close(fds[i]);
    }
    if (r < 0) {
      Napi::Error e = MakeSys(env, "recvmsg", errno);
      Settle(env, nullptr, &e);
      return;
    }
    if (r == 0 && size == 0) {  // end of stream (CRIU never sends empty messages)
      Settle(env, nullptr, nullptr);
      return;
    }
    Napi::Buffer<char> out = Napi::Buffer<char>::Copy(env, buf.data(), static_cast<size_t>(r));
    Settle(env, &out, nullptr);
  }

  void Settle(Napi::Env env, Napi::Buffer<char>* value, Napi::Error* err) {
    if (!pending_) return;
    pending_ = false;
    events_.StopWatch();
    auto d = std::move(deferred_);
    if (err)
      d->Reject(err->Value());
    else if (value)
      d->Resolve(*value);
    else
      d->Resolve(env.Null());
    self_.Reset();
  }

  void DoClose() {
    events_.StopWatch();
    if (pending_ && !tearingDown()) {
      Napi::Env env = Env();
      Napi::HandleScope scope(env);
      pending_ = false;
      auto d = std::move(deferred_);
      // A rejected pending recv: the same StateError a later call would get.
      ThrowState(env, "ERR_CLOSED", "SeqPacket closed while a recv() was pending");
      Napi::Value e = env.GetAndClearPendingException().Value();
      d->Reject(e);
      self_.Reset();
    }
    pending_ = false;
    deferred_.reset();
    if (fd_ >= 0) {
      close(fd_);
      Untrack(Env(), this);
    }
    if (peer_ >= 0) close(peer_);
    fd_ = peer_ = -1;
  }
  bool tearingDown() {
    EnvData* d = GetEnvData(Env());
    return !d || d->tearingDown;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    DoClose();
    return info.Env().Undefined();
  }
  Napi::Value IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fd_ < 0); }

  int fd_ = -1;
  int peer_ = -1;
  FdEvents events_;  // watched only while a recv() waits; no callback kept
  bool pending_ = false;
  std::unique_ptr<Napi::Promise::Deferred> deferred_;
  Napi::ObjectReference self_;
  std::unique_ptr<Napi::AsyncContext> asyncCtx_;
};
const napi_type_tag SeqPacketWrap::kTag = {0x5e9acce7a11c0de5ULL, 0x6c7269750a736571ULL};

}  // namespace

Napi::Function InitSeqPacket(Napi::Env env) { return SeqPacketWrap::Init(env); }

}  // namespace sos
