#include "core/fd_events.h"

#include <fcntl.h>

#include <cerrno>

#include "core/common.h"

namespace sos {

bool SetNonBlocking(Napi::Env env, int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    ThrowSys(env, "fcntl(F_SETFL)", errno);
    return false;
  }
  return true;
}

bool FdEvents::Keep(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) {
    ThrowType(info.Env(), "callback must be a function");
    return false;
  }
  callback_ = Napi::Persistent(info[0].As<Napi::Function>());
  return true;
}

bool FdEvents::Start(const Napi::CallbackInfo& info, int fd, std::function<void()> onReadable) {
  if (!Keep(info)) return false;
  if (watch_) return true;
  return SetNonBlocking(info.Env(), fd) && Watch(info.Env(), fd, std::move(onReadable));
}

bool FdEvents::Watch(Napi::Env env, int fd, std::function<void()> onReadable) {
  if (watch_) return true;
  if (!FdWatch::Start(env, fd, std::move(onReadable), &watch_)) return false;
  if (!ref_) watch_->SetRef(false);
  return true;
}

void FdEvents::StopWatch() {
  if (watch_) watch_->Stop();
}

void FdEvents::Stop() {
  StopWatch();
  callback_.Reset();
}

void FdEvents::SetRef(bool ref) {
  ref_ = ref;
  if (watch_) watch_->SetRef(ref);
}

}  // namespace sos
