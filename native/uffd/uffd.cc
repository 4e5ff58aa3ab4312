#include "uffd/uffd.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "core/offthread.h"
#include "uffd/engine.h"
#include "uffd/uffd_abi.h"

namespace sos {

std::set<UffdCore*>& AllUffds() {
  static auto* s = new std::set<UffdCore*>();
  return *s;
}

bool WouldDeadlockLocked(napi_env env, uint64_t start, uint64_t end) {
  for (UffdCore* u : AllUffds()) {
    if (!u->ownProcess || u->ownerEnv != env || u->engineActive.load()) continue;
    if (!u->regs.Overlapping(start, end).empty()) return true;
  }
  return false;
}

bool IsRegisteredLocked(uint64_t start, uint64_t end) {
  for (UffdCore* u : AllUffds())
    if (u->ownProcess && !u->regs.Overlapping(start, end).empty()) return true;
  return false;
}

static const napi_type_tag kUffdTag = {0x1f2e3d4c5b6a7988ULL, 0x0123456789abcdefULL};

UffdWrap* UffdWrap::Unwrap(Napi::Value v) { return UnwrapTagged<UffdWrap>(v, &kUffdTag); }

Napi::Function UffdWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativeUffd",
                     {
                         InstanceMethod("api", &UffdWrap::Api),
                         InstanceMethod("register", &UffdWrap::Register),
                         InstanceMethod("unregister", &UffdWrap::Unregister),
                         InstanceMethod("copy", &UffdWrap::Copy),
                         InstanceMethod("zeropage", &UffdWrap::Zeropage),
                         InstanceMethod("continue", &UffdWrap::Continue),
                         InstanceMethod("writeprotect", &UffdWrap::Writeprotect),
                         InstanceMethod("move", &UffdWrap::Move),
                         InstanceMethod("poison", &UffdWrap::Poison),
                         InstanceMethod("wake", &UffdWrap::Wake),
                         InstanceMethod("read", &UffdWrap::Read),
                         InstanceMethod("startEvents", &UffdWrap::StartEvents),
                         InstanceMethod("stopEvents", &UffdWrap::StopEvents),
                         InstanceMethod("ref", &UffdWrap::Ref),
                         InstanceMethod("unref", &UffdWrap::Unref),
                         InstanceMethod("close", &UffdWrap::Close),
                         InstanceMethod("state", &UffdWrap::State),
                         StaticMethod("probe", &UffdWrap::Probe),
                         StaticMethod("fromProcess", &UffdWrap::FromProcess),
                     });
}

static int OpenUffd(bool viaDev, int flags, const char** call) {
  if (!viaDev) {
    *call = "userfaultfd";
    return static_cast<int>(syscall(SYS_userfaultfd, flags));
  }
  *call = "open(/dev/userfaultfd)";
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) return -1;
  *call = "ioctl(USERFAULTFD_IOC_NEW)";
  int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
  int e = errno;
  close(dev);
  errno = e;
  return fd;
}

// new NativeUffd({ via: 'syscall'|'dev', closeOnExec, nonBlocking, userModeOnly })
// new NativeUffd({ adopt: fd, features: bigint, ownProcess: false })
UffdWrap::UffdWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UffdWrap>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kUffdTag);
  if (!info[0].IsObject()) {
    ThrowType(env, "userfaultfd options must be an object");
    return;
  }
  Napi::Object o = info[0].As<Napi::Object>();
  auto core = std::make_shared<UffdCore>();
  core->ownerEnv = env_;
  if (!o.Get("adopt").IsUndefined()) {
    uint64_t fd, features = 0;
    if (!ToU64(env, o.Get("adopt"), "adopt", &fd)) return;
    if (!o.Get("features").IsUndefined() && !ToU64(env, o.Get("features"), "features", &features)) return;
    core->fd = static_cast<int>(fd);
    core->features = features;
    core->apiDone = true;  // an adopted fd has done its handshake
    core->ownProcess = o.Get("ownProcess").ToBoolean();
  } else {
    std::string via = o.Get("via").IsString() ? o.Get("via").As<Napi::String>().Utf8Value() : "syscall";
    if (via != "syscall" && via != "dev") {
      ThrowType(env, "via must be 'syscall' or 'dev'");
      return;
    }
    int flags = 0;
    if (o.Get("closeOnExec").IsUndefined() || o.Get("closeOnExec").ToBoolean()) flags |= O_CLOEXEC;
    if (o.Get("nonBlocking").IsUndefined() || o.Get("nonBlocking").ToBoolean()) flags |= O_NONBLOCK;
    if (o.Get("userModeOnly").ToBoolean()) flags |= UFFD_USER_MODE_ONLY;
    const char* call = "";
    int fd = OpenUffd(via == "dev", flags, &call);
    if (fd < 0) {
      ThrowSys(env, call, errno);
      return;
    }
    core->fd = fd;
  }
  {
    Lock lock(RegistryMutex());
    AllUffds().insert(core.get());
  }
  core_ = core;
  Track(env, this);
}

UffdWrap::~UffdWrap() {
  inDestructor_ = true;
  DoClose();
}

bool UffdWrap::Live(Napi::Env env, bool needApi) {
  if (!core_) {
    ThrowState(env, "ERR_CLOSED", "userfaultfd is closed");
    return false;
  }
  if (needApi && !core_->apiDone) {
    ThrowState(env, "ERR_NO_API", "call api() (the UFFDIO_API handshake) before using the userfaultfd");
    return false;
  }
  return true;
}

bool UffdWrap::Range(Napi::Env env, const Napi::Value& a, const Napi::Value& l, uint64_t* addr, uint64_t* len) {
  if (!ToU64(env, a, "address", addr) || !ToU64(env, l, "length", len)) return false;
  uint64_t ps = static_cast<uint64_t>(PageSize());
  if (*addr % ps || *len % ps || *len == 0 || *addr + *len < *addr) {
    ThrowRange(env, "address and length must be page-aligned and length positive");
    return false;
  }
  return true;
}

void UffdWrap::DoClose() {
  if (!core_) return;
  if (engine_) engine_->CloseFromParent();  // children first
  engine_ = nullptr;
  StopPoll();
  events_.Stop();
  asyncCtx_.reset();
  {
    Lock lock(RegistryMutex());
    core_->regs.Clear();  // the kernel drops them when the fd closes
    AllUffds().erase(core_.get());
  }
  // Faulting threads blocked on this uffd are woken by the kernel on close.
  close(core_->fd);
  core_->fd = -1;
  core_.reset();
  Untrack(Napi::Env(env_), this);
}

Napi::Value UffdWrap::Close(const Napi::CallbackInfo& info) {
  DoClose();
  return info.Env().Undefined();
}

Napi::Value UffdWrap::State(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("closed", !core_);
  if (!core_) return o;
  o.Set("fd", core_->fd);
  o.Set("apiDone", core_->apiDone);
  o.Set("features", Napi::BigInt::New(env, core_->features));
  o.Set("ioctls", Napi::BigInt::New(env, core_->ioctls));
  o.Set("ownProcess", core_->ownProcess);
  o.Set("engine", engine_ != nullptr);
  o.Set("events", events_.watching());
  return o;
}

// probe() -> { features, ioctls }: what this kernel offers, from a throwaway
// userfaultfd whose handshake asked for nothing.
Napi::Value UffdWrap::Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool viaDev = info[0].IsString() && info[0].As<Napi::String>().Utf8Value() == "dev";
  const char* call = "";
  int fd = OpenUffd(viaDev, O_CLOEXEC | O_NONBLOCK, &call);
  if (fd < 0) {
    ThrowSys(env, call, errno);
    return env.Undefined();
  }
  struct uffdio_api api = {};
  api.api = UFFD_API;
  int r = ioctl(fd, UFFDIO_API, &api);
  int e = errno;
  close(fd);
  if (r != 0) {
    ThrowSys(env, "ioctl(UFFDIO_API)", e);
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("features", Napi::BigInt::New(env, static_cast<uint64_t>(api.features)));
  o.Set("ioctls", Napi::BigInt::New(env, static_cast<uint64_t>(api.ioctls)));
  return o;
}

// fromProcess(pid, fd) -> fd in this process (pidfd_getfd), for adopting a
// userfaultfd another process created (lazy restore, tests, monitors).
Napi::Value UffdWrap::FromProcess(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t pid, fd;
  if (!ToU64(env, info[0], "pid", &pid) || !ToU64(env, info[1], "fd", &fd)) return env.Undefined();
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (pidfd < 0) {
    ThrowSys(env, "pidfd_open", errno);
    return env.Undefined();
  }
  int nfd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, static_cast<int>(fd), 0));
  int e = errno;
  close(pidfd);
  if (nfd < 0) {
    ThrowSys(env, "pidfd_getfd", e);
    return env.Undefined();
  }
  fcntl(nfd, F_SETFD, FD_CLOEXEC);
  return Napi::Number::New(env, nfd);
}

// api(features: bigint) -> { features, ioctls }
Napi::Value UffdWrap::Api(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env, false)) return env.Undefined();
  if (core_->apiDone) {
    ThrowState(env, "ERR_API_DONE", "the UFFDIO_API handshake can be done only once per userfaultfd");
    return env.Undefined();
  }
  uint64_t features;
  if (!ToU64(env, info[0], "features", &features)) return env.Undefined();
  if (core_->ownProcess && (features & UFFD_FEATURE_EVENT_FORK)) {
    // fork() of this process waits until its FORK event is read; the reader
    // would be this process's own JS thread, blocked in that very fork (any
    // child_process spawn). Only userfaultfds of other processes take it.
    ThrowState(env, "ERR_DEADLOCK",
               "EVENT_FORK on a userfaultfd of this process would block every fork/spawn of this process; "
               "use it on a userfaultfd adopted from another process (Userfaultfd.fromProcess)");
    return env.Undefined();
  }
  struct uffdio_api api = {};
  api.api = UFFD_API;
  api.features = features;
  if (ioctl(core_->fd, UFFDIO_API, &api) != 0) {
    int e = errno;
    ThrowSys(env, "ioctl(UFFDIO_API)", e,
             e == EINVAL  ? "a requested feature is not offered by this kernel (see probe())"
             : e == EPERM ? "EVENT_FORK needs CAP_SYS_PTRACE"
                          : "");
    return env.Undefined();
  }
  // On return the kernel reports every feature it has; the ones in force
  // are the ones we asked for.
  core_->apiDone = true;
  core_->features = features;
  core_->ioctls = api.ioctls;
  Napi::Object o = Napi::Object::New(env);
  o.Set("features", Napi::BigInt::New(env, features));
  o.Set("available", Napi::BigInt::New(env, static_cast<uint64_t>(api.features)));
  o.Set("ioctls", Napi::BigInt::New(env, static_cast<uint64_t>(api.ioctls)));
  return o;
}

// register(address, length, mode) -> ioctls (bigint)
Napi::Value UffdWrap::Register(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t addr, len, mode;
  if (!Range(env, info[0], info[1], &addr, &len) || !ToU64(env, info[2], "mode", &mode)) return env.Undefined();
  Lock lock(RegistryMutex());
  std::shared_ptr<Mapping> m;
  if (core_->ownProcess) {
    // Registering memory the addon does not own (the JS heap, a library's
    // data) would let any access hang the process: refuse it.
    m = FindMappingLocked(addr, len);
    if (!m) {
      ThrowState(env, "ERR_NOT_REGION", "range is not inside a live Region of this process");
      return env.Undefined();
    }
    if (!m->holes.Overlapping(addr - m->Addr(), addr - m->Addr() + len).empty()) {
      ThrowState(env, "ERR_UNMAPPED", "range includes unmapped pages");
      return env.Undefined();
    }
  }
  struct uffdio_register reg = {};
  reg.range.start = addr;
  reg.range.len = len;
  reg.mode = mode;
  if (ioctl(core_->fd, UFFDIO_REGISTER, &reg) != 0) {
    int e = errno;
    ThrowSys(env, "ioctl(UFFDIO_REGISTER)", e,
             e == EBUSY    ? "range is registered with another userfaultfd"
             : e == EINVAL ? "mode not supported for this memory type or range not aligned to its page size"
                           : "");
    return env.Undefined();
  }
  if (m) {
    core_->regs.Assign(addr, addr + len, Registration{mode, m});
    // From now on this thread must not touch the range unless an engine serves it.
    if (!core_->engineActive.load()) {
      for (ViewHold* v : std::set<ViewHold*>(m->views))
        if (v->env == env_) DetachViewLocked(v);
    }
  }
  return Napi::BigInt::New(env, static_cast<uint64_t>(reg.ioctls));
}

Napi::Value UffdWrap::Unregister(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t addr, len;
  if (!Range(env, info[0], info[1], &addr, &len)) return env.Undefined();
  struct uffdio_range r = {addr, len};
  if (ioctl(core_->fd, UFFDIO_UNREGISTER, &r) != 0) {
    ThrowSys(env, "ioctl(UFFDIO_UNREGISTER)", errno);
    return env.Undefined();
  }
  Lock lock(RegistryMutex());
  core_->regs.Erase(addr, addr + len);
  return env.Undefined();
}

// Resolve the source of a copy: JS memory (TypedArray/ArrayBuffer/Buffer) or
// an address inside a live Region of this process.
static bool SourcePointer(Napi::Env env, napi_env owner, const Napi::Value& v, uint64_t len, uint64_t* out) {
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    if (ta.ByteLength() < len) {
      ThrowRange(env, "source is shorter than length");
      return false;
    }
    *out = reinterpret_cast<uint64_t>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
    return true;
  }
  if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    if (ab.ByteLength() < len) {
      ThrowRange(env, "source is shorter than length");
      return false;
    }
    *out = reinterpret_cast<uint64_t>(ab.Data());
    return true;
  }
  uint64_t a;
  if (!ToU64(env, v, "source", &a)) return false;
  Lock lock(RegistryMutex());
  if (!FindMappingLocked(a, len)) {
    ThrowState(env, "ERR_NOT_REGION", "source address range is not inside a live Region of this process");
    return false;
  }
  if (WouldDeadlockLocked(owner, a, a + len)) {
    ThrowState(env, "ERR_DEADLOCK", "source range is registered with a userfaultfd this thread must serve");
    return false;
  }
  *out = a;
  return true;
}

static Napi::Value Fail(Napi::Env env, const char* call, int err, int64_t done) {
  Napi::Error e = MakeSys(env, call, err, done > 0 ? "after " + std::to_string(done) + " bytes" : "");
  e.Set("bytes", Napi::Number::New(env, done > 0 ? static_cast<double>(done) : 0));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// copy(dst, src, length, mode) -> bytes copied
Napi::Value UffdWrap::Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t dst, len, mode, src;
  if (!Range(env, info[0], info[2], &dst, &len) || !ToU64(env, info[3], "mode", &mode)) return env.Undefined();
  if (!SourcePointer(env, env_, info[1], len, &src)) return env.Undefined();
  struct uffdio_copy c = {};
  c.dst = dst;
  c.src = src;
  c.len = len;
  c.mode = mode;
  if (ioctl(core_->fd, UFFDIO_COPY, &c) != 0) return Fail(env, "ioctl(UFFDIO_COPY)", errno, c.copy);
  return Napi::Number::New(env, static_cast<double>(c.copy));
}

// The ioctls that take (range, mode) and report how much they did share one
// shape: ARG is the kernel's struct, DONE its result field.
template <typename ARG, __s64 ARG::*DONE>
Napi::Value UffdWrap::RangeOp(const Napi::CallbackInfo& info, unsigned long request, const char* call) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t addr, len, mode;
  if (!Range(env, info[0], info[1], &addr, &len) || !ToU64(env, info[2], "mode", &mode)) return env.Undefined();
  ARG a = {};
  a.range = {addr, len};
  a.mode = mode;
  if (ioctl(core_->fd, request, &a) != 0) return Fail(env, call, errno, a.*DONE);
  return Napi::Number::New(env, static_cast<double>(a.*DONE));
}

Napi::Value UffdWrap::Zeropage(const Napi::CallbackInfo& info) {
  return RangeOp<struct uffdio_zeropage, &uffdio_zeropage::zeropage>(info, UFFDIO_ZEROPAGE, "ioctl(UFFDIO_ZEROPAGE)");
}
Napi::Value UffdWrap::Continue(const Napi::CallbackInfo& info) {
  return RangeOp<struct uffdio_continue, &uffdio_continue::mapped>(info, UFFDIO_CONTINUE, "ioctl(UFFDIO_CONTINUE)");
}
Napi::Value UffdWrap::Poison(const Napi::CallbackInfo& info) {
  return RangeOp<struct sos_uffdio_poison, &sos_uffdio_poison::updated>(info, SOS_UFFDIO_POISON,
                                                                        "ioctl(UFFDIO_POISON)");
}

Napi::Value UffdWrap::Writeprotect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t addr, len, mode;
  if (!Range(env, info[0], info[1], &addr, &len) || !ToU64(env, info[2], "mode", &mode)) return env.Undefined();
  struct uffdio_writeprotect w = {};
  w.range = {addr, len};
  w.mode = mode;
  if (ioctl(core_->fd, UFFDIO_WRITEPROTECT, &w) != 0) {
    ThrowSys(env, "ioctl(UFFDIO_WRITEPROTECT)", errno);
    return env.Undefined();
  }
  return env.Undefined();
}

// move(dst, src, length, mode) -> bytes moved
Napi::Value UffdWrap::Move(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t dst, src, len, mode;
  if (!Range(env, info[0], info[2], &dst, &len) || !ToU64(env, info[1], "source", &src) ||
      !ToU64(env, info[3], "mode", &mode))
    return env.Undefined();
  if (src % PageSize()) {
    ThrowRange(env, "source must be page-aligned");
    return env.Undefined();
  }
  if (core_->ownProcess) {
    Lock lock(RegistryMutex());
    auto m = FindMappingLocked(src, len);
    if (!m) {
      ThrowState(env, "ERR_NOT_REGION", "source range is not inside a live Region of this process");
      return env.Undefined();
    }
    if (WouldDeadlockLocked(env_, src, src + len)) {
      ThrowState(env, "ERR_DEADLOCK", "source range is registered with a userfaultfd this thread must serve");
      return env.Undefined();
    }
  }
  struct sos_uffdio_move mv = {};
  mv.dst = dst;
  mv.src = src;
  mv.len = len;
  mv.mode = mode;
  if (ioctl(core_->fd, SOS_UFFDIO_MOVE, &mv) != 0) return Fail(env, "ioctl(UFFDIO_MOVE)", errno, mv.move);
  return Napi::Number::New(env, static_cast<double>(mv.move));
}

Napi::Value UffdWrap::Wake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t addr, len;
  if (!Range(env, info[0], info[1], &addr, &len)) return env.Undefined();
  struct uffdio_range r = {addr, len};
  if (ioctl(core_->fd, UFFDIO_WAKE, &r) != 0) {
    ThrowSys(env, "ioctl(UFFDIO_WAKE)", errno);
    return env.Undefined();
  }
  return env.Undefined();
}

Napi::Object EventToJs(Napi::Env env, const struct ::uffd_msg& m) {
  Napi::Object o = Napi::Object::New(env);
  switch (m.event) {
    case UFFD_EVENT_PAGEFAULT: {
      o.Set("type", "pagefault");
      o.Set("address", FromU64(env, m.arg.pagefault.address));
      o.Set("flags", Napi::Number::New(env, static_cast<double>(m.arg.pagefault.flags)));
      o.Set("tid", Napi::Number::New(env, m.arg.pagefault.feat.ptid));
      break;
    }
    case UFFD_EVENT_FORK:
      o.Set("type", "fork");
      o.Set("fd", Napi::Number::New(env, m.arg.fork.ufd));
      break;
    case UFFD_EVENT_REMAP:
      o.Set("type", "remap");
      o.Set("from", FromU64(env, m.arg.remap.from));
      o.Set("to", FromU64(env, m.arg.remap.to));
      o.Set("length", FromU64(env, m.arg.remap.len));
      break;
    case UFFD_EVENT_REMOVE:
    case UFFD_EVENT_UNMAP:
      o.Set("type", m.event == UFFD_EVENT_REMOVE ? "remove" : "unmap");
      o.Set("start", FromU64(env, m.arg.remove.start));
      o.Set("end", FromU64(env, m.arg.remove.end));
      break;
    default: o.Set("type", "unknown"); o.Set("event", Napi::Number::New(env, m.event));
  }
  return o;
}

// Read every pending message without blocking; 0 or an errno.
int UffdWrap::ReadRaw(std::vector<struct ::uffd_msg>* out) {
  struct uffd_msg msgs[64];
  for (;;) {
    // Never block: check readiness first (the fd may be blocking).
    struct pollfd p = {core_->fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN)) return 0;
    ssize_t r = read(core_->fd, msgs, sizeof(msgs));
    if (r < 0) return errno == EAGAIN || errno == EINTR ? 0 : errno;
    size_t count = static_cast<size_t>(r) / sizeof(struct uffd_msg);
    out->insert(out->end(), msgs, msgs + count);
    if (count < 64) return 0;
  }
}

static Napi::Array EventsToJs(Napi::Env env, const std::vector<struct ::uffd_msg>& msgs) {
  Napi::Array out = Napi::Array::New(env, msgs.size());
  for (uint32_t i = 0; i < msgs.size(); i++) out.Set(i, EventToJs(env, msgs[i]));
  return out;
}

// read() -> events pending now (never blocks)
Napi::Value UffdWrap::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  if (engine_) {
    ThrowState(env, "ERR_BUSY", "a fault engine is reading this userfaultfd");
    return env.Undefined();
  }
  std::vector<struct ::uffd_msg> msgs;
  int err = ReadRaw(&msgs);
  if (err) {
    ThrowSys(env, "read(userfaultfd)", err);
    return env.Undefined();
  }
  return EventsToJs(env, msgs);
}

bool UffdWrap::StartPoll(Napi::Env env) {
  if (events_.watching()) return true;
  // Not made non-blocking here: a userfaultfd opened blocking stays so.
  if (!events_.Watch(env, core_->fd, [this] { OnReadable(); })) return false;
  // Like a socket: while it delivers events, dropping the JS object must not
  // let the GC close it under the threads waiting on its faults.
  if (!selfRef_) {
    Napi::ObjectWrap<UffdWrap>::Ref();
    selfRef_ = true;
  }
  return true;
}

void UffdWrap::StopPoll() {
  events_.StopWatch();
  if (selfRef_ && !inDestructor_) Napi::ObjectWrap<UffdWrap>::Unref();
  selfRef_ = false;
}

void UffdWrap::OnReadable() {
  if (!core_ || events_.callback().IsEmpty()) return;
  // Read even when JS can no longer run (env teardown): threads waiting for
  // their REMOVE/UNMAP/REMAP event to be read are released that way.
  std::vector<struct ::uffd_msg> msgs;
  int err = ReadRaw(&msgs);
  if (!CanRunJs(env_)) return;
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  if (err) {
    StopPoll();
    events_.callback().MakeCallback(env.Global(), {MakeSys(env, "read(userfaultfd)", err).Value(), env.Null()},
                                    *asyncCtx_);
    return;
  }
  if (msgs.empty()) return;
  events_.callback().MakeCallback(env.Global(), {env.Null(), EventsToJs(env, msgs)}, *asyncCtx_);
}

// startEvents(cb(err, events[])): deliver events from a libuv poll.
Napi::Value UffdWrap::StartEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  if (!events_.Keep(info)) return env.Undefined();
  if (!asyncCtx_) asyncCtx_ = std::make_unique<Napi::AsyncContext>(env, "sos:userfaultfd");
  eventsWanted_ = true;
  if (!engine_ && !StartPoll(env)) return env.Undefined();
  return env.Undefined();
}

Napi::Value UffdWrap::StopEvents(const Napi::CallbackInfo& info) {
  eventsWanted_ = false;
  StopPoll();
  return info.Env().Undefined();
}

Napi::Value UffdWrap::Ref(const Napi::CallbackInfo& info) {
  events_.SetRef(true);
  return info.Env().Undefined();
}

Napi::Value UffdWrap::Unref(const Napi::CallbackInfo& info) {
  events_.SetRef(false);
  return info.Env().Undefined();
}

bool UffdWrap::AttachEngine(Napi::Env env, EngineWrap* e) {
  if (!Live(env)) return false;
  if (engine_) {
    ThrowState(env, "ERR_BUSY", "another fault engine already serves this userfaultfd");
    return false;
  }
  StopPoll();
  engine_ = e;
  core_->engineActive = true;
  return true;
}

void UffdWrap::DetachEngine(EngineWrap* e, bool restartEvents) {
  if (engine_ != e) return;
  engine_ = nullptr;
  if (!core_) return;
  core_->engineActive = false;
  {
    // This thread is again the one that must serve faults: drop its views
    // over ranges that are still registered.
    Lock lock(RegistryMutex());
    for (const auto& r : core_->regs.All()) {
      if (!r.value.mapping) continue;
      for (ViewHold* v : std::set<ViewHold*>(r.value.mapping->views))
        if (v->env == env_) DetachViewLocked(v);
    }
  }
  if (restartEvents && eventsWanted_) StartPoll(Napi::Env(env_));
}

}  // namespace sos
