#include "core/fd_watch.h"

#include "core/common.h"

namespace sos {

FdWatch* FdWatch::Start(Napi::Env env, int fd, std::function<void()> onReadable, FdWatch** slot) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
    ThrowState(env, "ERR_NO_LOOP", "no event loop");
    return nullptr;
  }
  auto* w = new FdWatch();
  w->handle_.data = w;
  int r = uv_poll_init(loop, &w->handle_, fd);
  if (r != 0) {
    delete w;
    ThrowSys(env, "uv_poll_init", -r);
    return nullptr;
  }
  w->onReadable_ = std::move(onReadable);
  w->slot_ = slot;
  *slot = w;
  napi_add_async_cleanup_hook(env, OnTeardown, w, &w->hook_);
  uv_poll_start(&w->handle_, UV_READABLE, OnPoll);
  return w;
}

void FdWatch::OnPoll(uv_poll_t* h, int status, int events) {
  auto* w = static_cast<FdWatch*>(h->data);
  if (!w->closing_ && w->onReadable_) w->onReadable_();
}

void FdWatch::Stop() {
  if (closing_) return;
  closing_ = true;
  if (slot_) *slot_ = nullptr;
  slot_ = nullptr;
  onReadable_ = nullptr;
  uv_poll_stop(&handle_);
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_), OnClosed);
}

void FdWatch::SetRef(bool ref) {
  if (closing_) return;
  if (ref)
    uv_ref(reinterpret_cast<uv_handle_t*>(&handle_));
  else
    uv_unref(reinterpret_cast<uv_handle_t*>(&handle_));
}

void FdWatch::OnClosed(uv_handle_t* h) {
  auto* w = static_cast<FdWatch*>(h->data);
  if (w->hook_) napi_remove_async_cleanup_hook(w->hook_);
  delete w;
}

// At teardown the owner may not have stopped us yet: stop now (clearing the
// owner's pointer, so its own close later does not touch us).
void FdWatch::OnTeardown(napi_async_cleanup_hook_handle, void* arg) { static_cast<FdWatch*>(arg)->Stop(); }

}  // namespace sos
