// Watch a file descriptor for readability on the JS thread's libuv loop.
// Closed through an async cleanup hook at env teardown, so a worker never
// exits with a half-closed handle.
#pragma once
#include <napi.h>
#include <uv.h>

#include <functional>

namespace sos {

class FdWatch {
 public:
  // Starts watching and stores itself in *slot, which it clears when it goes
  // away on its own (env teardown). nullptr with an exception on failure.
  static FdWatch* Start(Napi::Env env, int fd, std::function<void()> onReadable, FdWatch** slot);
  // Idempotent; the object frees itself once libuv has closed the handle.
  // Never touches the fd: close it after Stop().
  void Stop();
  void SetRef(bool ref);

 private:
  FdWatch() = default;
  static void OnPoll(uv_poll_t* h, int status, int events);
  static void OnClosed(uv_handle_t* h);
  static void OnTeardown(napi_async_cleanup_hook_handle, void* arg);
  uv_poll_t handle_;
  napi_async_cleanup_hook_handle hook_ = nullptr;
  std::function<void()> onReadable_;
  FdWatch** slot_ = nullptr;
  bool closing_ = false;
};

}  // namespace sos
