// The userfaultfd handle exposed to JavaScript: open/adopt, the API
// handshake, every range ioctl, and event delivery from a libuv poll.
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "core/common.h"
#include "core/fd_events.h"
#include "uffd/uffd_abi.h"
#include "uffd/uffd_core.h"

namespace sos {

class EngineWrap;

class UffdWrap : public Napi::ObjectWrap<UffdWrap>, public Closable {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit UffdWrap(const Napi::CallbackInfo& info);
  ~UffdWrap() override;
  static UffdWrap* Unwrap(Napi::Value v);

  int CloseRank() const override { return 20; }
  void CloseForTeardown() override { DoClose(); }

  std::shared_ptr<UffdCore> core() const { return core_; }
  // Engine hand-over: while an engine runs it is the only reader.
  bool AttachEngine(Napi::Env env, EngineWrap* e);
  void DetachEngine(EngineWrap* e, bool restartEvents);

  // Called by the event watch.
  void OnReadable();

 private:
  Napi::Value Api(const Napi::CallbackInfo& info);
  Napi::Value Register(const Napi::CallbackInfo& info);
  Napi::Value Unregister(const Napi::CallbackInfo& info);
  Napi::Value Copy(const Napi::CallbackInfo& info);
  Napi::Value Zeropage(const Napi::CallbackInfo& info);
  Napi::Value Continue(const Napi::CallbackInfo& info);
  Napi::Value Writeprotect(const Napi::CallbackInfo& info);
  Napi::Value Move(const Napi::CallbackInfo& info);
  Napi::Value Poison(const Napi::CallbackInfo& info);
  Napi::Value Wake(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value StartEvents(const Napi::CallbackInfo& info);
  Napi::Value StopEvents(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  static Napi::Value Probe(const Napi::CallbackInfo& info);
  static Napi::Value FromProcess(const Napi::CallbackInfo& info);

  template <typename ARG, __s64 ARG::*DONE>
  Napi::Value RangeOp(const Napi::CallbackInfo& info, unsigned long request, const char* call);
  bool Live(Napi::Env env, bool needApi = true);
  bool Range(Napi::Env env, const Napi::Value& a, const Napi::Value& l, uint64_t* addr, uint64_t* len);
  void DoClose();
  bool StartPoll(Napi::Env env);
  void StopPoll();
  int ReadRaw(std::vector<struct ::uffd_msg>* out);

  napi_env env_;
  std::shared_ptr<UffdCore> core_;
  FdEvents events_;
  std::unique_ptr<Napi::AsyncContext> asyncCtx_;
  bool eventsWanted_ = false;
  bool selfRef_ = false;
  bool inDestructor_ = false;
  EngineWrap* engine_ = nullptr;
};

// One kernel message as a JS event object.
Napi::Object EventToJs(Napi::Env env, const struct ::uffd_msg& m);

}  // namespace sos
