#include "core/common.h"

#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace sos {

const char* ErrnoName(int err) {
  const char* n = strerrorname_np(err);
  return n ? n : "EUNKNOWN";
}

static Napi::Error MakeWith(Napi::Env env, Napi::FunctionReference& ctor, const std::string& msg, Napi::Object props) {
  Napi::Object err;
  if (!ctor.IsEmpty()) {
    err = ctor.New({Napi::String::New(env, msg), props});
  } else {
    err = Napi::Error::New(env, msg).Value();
    auto names = props.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) err.Set(names.Get(i), props.Get(names.Get(i)));
  }
  return Napi::Error(env, err);
}

Napi::Error MakeSys(Napi::Env env, const char* syscall, int err, const std::string& detail) {
  std::string msg = std::string(syscall) + " failed: " + strerror(err) + " (" + ErrnoName(err) + ")";
  if (!detail.empty()) msg += ": " + detail;
  Napi::Object props = Napi::Object::New(env);
  props.Set("code", ErrnoName(err));
  props.Set("errno", -err);
  props.Set("syscall", syscall);
  EnvData* d = GetEnvData(env);
  Napi::FunctionReference empty;
  return MakeWith(env, d ? d->systemError : empty, msg, props);
}

void ThrowSys(Napi::Env env, const char* syscall, int err, const std::string& detail) {
  MakeSys(env, syscall, err, detail).ThrowAsJavaScriptException();
}

void ThrowState(Napi::Env env, const char* code, const std::string& message) {
  Napi::Object props = Napi::Object::New(env);
  props.Set("code", code);
  EnvData* d = GetEnvData(env);
  Napi::FunctionReference empty;
  MakeWith(env, d ? d->stateError : empty, message, props).ThrowAsJavaScriptException();
}

// new ctor(message) when the TypeScript layer registered ctor; false when it
// did not, or the constructor could not run.
static bool ThrowWith(Napi::Env env, Napi::FunctionReference& ctor, const std::string& message) {
  if (ctor.IsEmpty()) return false;
  Napi::Object err = ctor.New({Napi::String::New(env, message)});
  if (err.IsEmpty() || env.IsExceptionPending()) return false;
  Napi::Error(env, err).ThrowAsJavaScriptException();
  return true;
}

void ThrowType(Napi::Env env, const std::string& message) {
  if (env.IsExceptionPending()) return;
  EnvData* d = GetEnvData(env);
  if (d && ThrowWith(env, d->argTypeError, message)) return;
  auto e = Napi::TypeError::New(env, message);
  e.Set("code", "ERR_INVALID_ARG_TYPE");
  e.ThrowAsJavaScriptException();
}

void ThrowRange(Napi::Env env, const std::string& message) {
  if (env.IsExceptionPending()) return;
  EnvData* d = GetEnvData(env);
  if (d && ThrowWith(env, d->argRangeError, message)) return;
  auto e = Napi::RangeError::New(env, message);
  e.Set("code", "ERR_OUT_OF_RANGE");
  e.ThrowAsJavaScriptException();
}

static void CleanupEnv(void* arg) {
  auto* d = static_cast<EnvData*>(arg);
  d->tearingDown = true;
  // Close children before parents; each Close untracks itself.
  std::vector<Closable*> order(d->live.begin(), d->live.end());
  std::stable_sort(order.begin(), order.end(),
                   [](Closable* a, Closable* b) { return a->CloseRank() < b->CloseRank(); });
  for (Closable* c : order) {
    if (d->live.count(c)) c->CloseForTeardown();
  }
  d->live.clear();
}

EnvData* GetEnvData(Napi::Env env) {
  EnvData* d = env.GetInstanceData<EnvData>();
  if (!d) {
    d = new EnvData();
    env.SetInstanceData(d);  // deleted by node after cleanup hooks ran
    napi_add_env_cleanup_hook(env, CleanupEnv, d);
  }
  return d;
}

void Track(Napi::Env env, Closable* c) { GetEnvData(env)->live.insert(c); }
void Untrack(Napi::Env env, Closable* c) {
  EnvData* d = env.GetInstanceData<EnvData>();
  if (d) d->live.erase(c);
}

bool ToU64(Napi::Env env, const Napi::Value& v, const char* name, uint64_t* out) {
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) {
      ThrowRange(env, std::string(name) + " must fit in 64 unsigned bits");
      return false;
    }
    *out = x;
    return true;
  }
  if (!v.IsNumber()) {
    ThrowType(env, std::string(name) + " must be a number or bigint");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
    ThrowRange(env, std::string(name) + " must be a non-negative safe integer");
    return false;
  }
  *out = static_cast<uint64_t>(d);
  return true;
}

Napi::Value FromU64(Napi::Env env, uint64_t v) {
  if (v <= 9007199254740991ULL) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, v);
}

long PageSize() {
  static long ps = sysconf(_SC_PAGESIZE);
  return ps;
}

}  // namespace sos
