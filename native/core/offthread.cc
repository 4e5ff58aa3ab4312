#include "core/offthread.h"

namespace sos {

bool CanRunJs(napi_env env) {
  // Property writes may run JS, so N-API refuses them once JS cannot run.
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return false;
  napi_value obj, undef;
  bool ok = napi_create_object(env, &obj) == napi_ok && napi_get_undefined(env, &undef) == napi_ok &&
            napi_set_named_property(env, obj, "probe", undef) == napi_ok;
  napi_close_handle_scope(env, scope);
  return ok;
}

OffThread::OffThread(Napi::Env env, Work work, Done done)
    : env_(env), work_(std::move(work)), done_(std::move(done)), deferred_(Napi::Promise::Deferred::New(env)) {}

Napi::Value OffThread::Start(Napi::Env env, Work work, Done done) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
    ThrowState(env, "ERR_NO_LOOP", "no event loop");
    return env.Undefined();
  }
  auto* job = new OffThread(env, std::move(work), std::move(done));
  Napi::Promise promise = job->deferred_.Promise();
  uv_async_init(loop, &job->async_, OnAsync);
  job->async_.data = job;
  napi_add_async_cleanup_hook(env, OnTeardown, job, &job->hook_);
  Track(env, job);
  job->thread_ = std::thread([job] {
    job->work_();
    job->finished_ = true;
    uv_async_send(&job->async_);  // the handle outlives the thread: Close() joins first
  });
  return promise;
}

void OffThread::OnAsync(uv_async_t* h) {
  auto* job = static_cast<OffThread*>(h->data);
  if (job->closing_ || !job->finished_) return;
  if (job->thread_.joinable()) job->thread_.join();
  // Take the closures out: what they hold (a pinned region, say) is released
  // when this callback returns, before any JS continuation of the promise.
  Done done = std::move(job->done_);
  job->done_ = nullptr;
  job->work_ = nullptr;
  if (CanRunJs(job->env_)) {
    Napi::Env env(job->env_);
    Napi::HandleScope scope(env);
    done(env, job->deferred_, true);
  } else {
    done(Napi::Env(job->env_), job->deferred_, false);
  }
  job->Close();
}

void OffThread::Close() {
  if (closing_) return;
  closing_ = true;
  Untrack(Napi::Env(env_), this);
  if (thread_.joinable()) thread_.join();
  // Teardown of a job whose completion never ran: its bookkeeping still must.
  if (done_) {
    Done done = std::move(done_);
    done_ = nullptr;
    done(Napi::Env(env_), deferred_, false);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), OnClosed);
}

void OffThread::OnClosed(uv_handle_t* h) {
  auto* job = static_cast<OffThread*>(h->data);
  if (job->hook_) napi_remove_async_cleanup_hook(job->hook_);
  delete job;
}

// Teardown: a finished job closes now; a running one may be blocked on a
// fault, so it is closed later by the env registry, after the userfaultfds.
void OffThread::OnTeardown(napi_async_cleanup_hook_handle, void* arg) {
  auto* job = static_cast<OffThread*>(arg);
  if (job->finished_) job->Close();
}

}  // namespace sos
