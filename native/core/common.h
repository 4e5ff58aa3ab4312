// Shared helpers for every native unit: typed errors, per-environment handle
// registry (closed children-first at env teardown), argument conversion.
#pragma once
#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <set>
#include <string>

namespace sos {

// Throw new SystemError(message, { code, errno, syscall }) using the class the
// TypeScript layer registered; falls back to a plain Error with those fields.
void ThrowSys(Napi::Env env, const char* syscall, int err, const std::string& detail = "");
Napi::Error MakeSys(Napi::Env env, const char* syscall, int err, const std::string& detail = "");
// State errors: use after close (ERR_CLOSED), busy (ERR_BUSY), deadlock
// (ERR_DEADLOCK), unsupported (ERR_UNSUPPORTED)...
void ThrowState(Napi::Env env, const char* code, const std::string& message);
// Argument errors: ArgTypeError (ERR_INVALID_ARG_TYPE) and ArgRangeError
// (ERR_OUT_OF_RANGE), SosErrors that are also TypeError/RangeError. An
// exception already pending is left as it is.
void ThrowType(Napi::Env env, const std::string& message);
void ThrowRange(Napi::Env env, const std::string& message);
// errno -> "EINVAL" etc.
const char* ErrnoName(int err);

// A native handle whose env may be torn down (worker exit, process exit)
// before it was closed. Lower rank closes first: children before parents.
class Closable {
 public:
  virtual ~Closable() = default;
  virtual int CloseRank() const = 0;
  virtual void CloseForTeardown() = 0;
};

struct EnvData {
  Napi::FunctionReference systemError;
  Napi::FunctionReference stateError;
  Napi::FunctionReference argTypeError;
  Napi::FunctionReference argRangeError;
  std::set<Closable*> live;
  bool tearingDown = false;
};

EnvData* GetEnvData(Napi::Env env);
void Track(Napi::Env env, Closable* c);
void Untrack(Napi::Env env, Closable* c);

// Integer conversion from Number (exact, non-negative) or BigInt. On failure
// a TypeError/RangeError is thrown and false returned.
bool ToU64(Napi::Env env, const Napi::Value& v, const char* name, uint64_t* out);
Napi::Value FromU64(Napi::Env env, uint64_t v);  // Number when exact, else BigInt

long PageSize();

// The native object behind a JS value when it carries our type tag, else
// nullptr (a plain object, another addon's wrap, a wrong receiver).
template <typename T>
T* UnwrapTagged(const Napi::Value& v, const napi_type_tag* tag) {
  if (!v.IsObject()) return nullptr;
  bool ok = false;
  if (napi_check_object_type_tag(v.Env(), v, tag, &ok) != napi_ok || !ok) return nullptr;
  return Napi::ObjectWrap<T>::Unwrap(v.As<Napi::Object>());
}

}  // namespace sos

// Early-return helpers for N-API methods.
#define SOS_RETURN_IF_PENDING(env)                            \
  do {                                                        \
    if ((env).IsExceptionPending()) return (env).Undefined(); \
  } while (0)
