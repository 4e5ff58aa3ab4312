// A job on its own thread whose result settles a promise on the JS thread.
// Not the libuv thread pool: Node waits for pool work before it runs cleanup
// hooks, so a job blocked on a fault that only our teardown would release
// (closing the userfaultfd) would hang a terminating worker forever.
#pragma once
#include <napi.h>
#include <uv.h>

#include <atomic>
#include <functional>
#include <thread>

#include "core/common.h"

namespace sos {

// False once the env is being torn down (JS can no longer run).
bool CanRunJs(napi_env env);

class OffThread : public Closable {
 public:
  using Work = std::function<void()>;
  // done(env, deferred, canRunJs) runs on the JS thread after work(), always
  // (also at env teardown, when canRunJs is false: then it may only do
  // bookkeeping, no JavaScript and no N-API values).
  using Done = std::function<void(Napi::Env, Napi::Promise::Deferred&, bool)>;
  // Runs work() on a new thread, then done() on the JS thread; returns the promise.
  static Napi::Value Start(Napi::Env env, Work work, Done done);

  int CloseRank() const override { return 25; }  // after userfaultfds: they release blocked jobs
  void CloseForTeardown() override { Close(); }

 private:
  OffThread(Napi::Env env, Work work, Done done);
  void Close();
  static void OnAsync(uv_async_t* h);
  static void OnClosed(uv_handle_t* h);
  static void OnTeardown(napi_async_cleanup_hook_handle, void* arg);

  napi_env env_;
  uv_async_t async_;
  napi_async_cleanup_hook_handle hook_ = nullptr;
  std::thread thread_;
  Work work_;
  Done done_;
  Napi::Promise::Deferred deferred_;
  std::atomic<bool> finished_{false};
  bool closing_ = false;
};

}  // namespace sos
