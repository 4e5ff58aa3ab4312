// Registers every native unit with Node.
#include <napi.h>

#include "core/common.h"
#include "criu/seqpacket.h"
#include "memory/pager_wrap.h"
#include "memory/replica_set.h"
#include "memory/wrap.h"
#include "rdma/verbs.h"
#include "uffd/engine.h"
#include "uffd/mapping.h"
#include "uffd/page_source.h"
#include "uffd/uffd.h"

namespace sos {
Napi::Value Touch(const Napi::CallbackInfo& info);
Napi::Value PeerCred(const Napi::CallbackInfo& info);
Napi::Value TakeFd(const Napi::CallbackInfo& info);
Napi::Value Workload(const Napi::CallbackInfo& info);
Napi::Function InitRdmaLink(Napi::Env env);

// setErrorClasses(SystemError, StateError, ArgTypeError, ArgRangeError):
// errors built natively use the TypeScript layer's classes.
static Napi::Value SetErrorClasses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  for (size_t i = 0; i < 4; i++) {
    if (!info[i].IsFunction()) {
      ThrowType(env, "setErrorClasses(SystemError, StateError, ArgTypeError, ArgRangeError) takes four constructors");
      return env.Undefined();
    }
  }
  EnvData* d = GetEnvData(env);
  d->systemError = Napi::Persistent(info[0].As<Napi::Function>());
  d->stateError = Napi::Persistent(info[1].As<Napi::Function>());
  d->argTypeError = Napi::Persistent(info[2].As<Napi::Function>());
  d->argRangeError = Napi::Persistent(info[3].As<Napi::Function>());
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  GetEnvData(env);
  exports.Set("setErrorClasses", Napi::Function::New(env, SetErrorClasses));
  exports.Set("NativeRegion", RegionWrap::Init(env));
  exports.Set("NativeUffd", UffdWrap::Init(env));
  exports.Set("NativeSource", SourceWrap::Init(env));
  exports.Set("NativeEngine", EngineWrap::Init(env));
  exports.Set("NativePager", PagerWrap::Init(env));
  exports.Set("touch", Napi::Function::New(env, Touch));
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(PageSize())));
  InitRdma(env, exports);
  exports.Set("NativeSeqPacket", InitSeqPacket(env));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred));
  exports.Set("takeFd", Napi::Function::New(env, TakeFd));
  exports.Set("NativeReplicaSet", ReplicaSetWrap::Init(env));
  exports.Set("workload", Napi::Function::New(env, Workload));
  exports.Set("NativeRdmaLink", InitRdmaLink(env));
  InitMemory(env, exports);
  return exports;
}
}  // namespace sos

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return sos::Init(env, exports); }
NODE_API_MODULE(serverlessos, InitModule)
