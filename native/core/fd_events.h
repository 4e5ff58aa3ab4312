// The one way a native object delivers a file descriptor's events to JS:
// startX(cb) keeps cb, makes the fd non-blocking and watches it on the libuv
// loop (core/fd_watch.h); ref(bool) says whether the watch keeps the process
// alive; the owner's close stops it.
#pragma once
#include <napi.h>

#include <functional>

#include "core/fd_watch.h"

namespace sos {

// O_NONBLOCK on fd; false with a SystemError (fcntl) thrown.
bool SetNonBlocking(Napi::Env env, int fd);

class FdEvents {
 public:
  // Keeps info[0] (a function, else TypeError) as the callback, then, unless
  // already watching, makes fd non-blocking and watches it. False with an
  // exception pending.
  bool Start(const Napi::CallbackInfo& info, int fd, std::function<void()> onReadable);
  // The two halves of Start, for an owner that pauses its watch (the
  // userfaultfd while an engine serves it) or keeps no callback.
  bool Keep(const Napi::CallbackInfo& info);
  bool Watch(Napi::Env env, int fd, std::function<void()> onReadable);
  // Stops watching (the callback stays).
  void StopWatch();
  // Stops watching and drops the callback.
  void Stop();
  // Applied to the running watch and to later ones.
  void SetRef(bool ref);
  bool watching() const { return watch_ != nullptr; }
  Napi::FunctionReference& callback() { return callback_; }

 private:
  FdWatch* watch_ = nullptr;
  Napi::FunctionReference callback_;
  bool ref_ = true;
};

}  // namespace sos
