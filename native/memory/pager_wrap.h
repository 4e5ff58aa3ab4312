// JS handle on a Pager: new NativePager(uffd, region, staging, backing,
// host, options, onEvent). `host` is a NativeSource that is made to carry
// the pager, so a FaultEngine can serve the region from it.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>

#include "core/common.h"
#include "memory/pager.h"

namespace sos {

class PagerWrap : public Napi::ObjectWrap<PagerWrap>, public Closable {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit PagerWrap(const Napi::CallbackInfo& info);
  ~PagerWrap() override;
  int CloseRank() const override { return 15; }  // after engines (10), before userfaultfds (20)
  void CloseForTeardown() override { DoClose(); }

 private:
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value States(const Napi::CallbackInfo& info);
  Napi::Value Discard(const Napi::CallbackInfo& info);
  Napi::Value Flush(const Napi::CallbackInfo& info);
  Napi::Value OffThread(const Napi::CallbackInfo& info, std::function<int(Pager&)> fn, const char* call,
                        const char* range);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void DoClose();

  // Events from pager threads to JS; guarded so that nothing is sent after close.
  struct Events {
    std::mutex mu;
    Napi::ThreadSafeFunction tsfn;
    bool live = false;
  };
  napi_env env_;
  std::shared_ptr<Events> events_;
  std::shared_ptr<Pager> pager_;
  Eviction eviction_ = Eviction::kMove;
  bool poison_ = true;
  bool closed_ = false;
};

}  // namespace sos
