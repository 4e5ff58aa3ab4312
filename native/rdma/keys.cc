#include "rdma/keys.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/common.h"

namespace sos {

namespace {

const char* const kNames[] = {
    "wrId",       "opcode", "sge",    "signaled",  "imm",        "remoteAddr", "rkey",
    "compareAdd", "swap",   "ah",     "remoteQpn", "remoteQkey", "mr",         "offset",
    "length",     "raw",    "status", "ok",        "byteLen",    "qpNum",      "srcQp",
};
static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<size_t>(Key::count_), "one name per key");

// One env per thread (the main thread or a worker): a tiny per-thread list.
thread_local std::vector<std::pair<napi_env, DataKeys*>> perThread;

}  // namespace

DataKeys* DataKeys::For(napi_env env) {
  for (auto& e : perThread)
    if (e.first == env) return e.second;
  auto* k = new DataKeys(env);
  perThread.emplace_back(env, k);
  napi_add_env_cleanup_hook(env, Cleanup, k);
  return k;
}

DataKeys::DataKeys(napi_env env) : env_(env) {
  // Property names read back from an object are V8's internalized strings:
  // using them as keys skips the string-table lookup on every access.
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value o, undef, names, empty;
  napi_create_object(env, &o);
  napi_get_undefined(env, &undef);
  for (const char* n : kNames) napi_set_named_property(env, o, n, undef);
  napi_get_property_names(env, o, &names);
  napi_create_reference(env, names, 1, &keys_);
  napi_create_array_with_length(env, 0, &empty);
  napi_object_freeze(env, empty);
  napi_create_reference(env, empty, 1, &empty_);
  napi_close_handle_scope(env, scope);
}

DataKeys::~DataKeys() {
  if (keys_) napi_delete_reference(env_, keys_);
  if (empty_) napi_delete_reference(env_, empty_);
}

napi_value DataKeys::Array() const {
  napi_value v = nullptr;
  napi_get_reference_value(env_, keys_, &v);
  return v;
}

napi_value DataKeys::EmptyArray() const {
  napi_value v = nullptr;
  napi_get_reference_value(env_, empty_, &v);
  return v;
}

void DataKeys::Cleanup(void* arg) {
  auto* k = static_cast<DataKeys*>(arg);
  for (auto it = perThread.begin(); it != perThread.end(); ++it)
    if (it->second == k) {
      perThread.erase(it);
      break;
    }
  delete k;
}

bool ReadUint(napi_env env, napi_value v, const char* name, uint64_t max, uint64_t* out, bool* present) {
  Napi::Env e(env);
  napi_valuetype t = napi_undefined;
  if (v) napi_typeof(env, v, &t);
  if (present) *present = t != napi_undefined;
  uint64_t x = 0;
  if (t == napi_undefined) {
    *out = 0;
    return true;
  }
  if (t == napi_number) {
    double d = 0;
    napi_get_value_double(env, v, &d);
    if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) {
      ThrowRange(e, std::string(name) + " must be a non-negative safe integer");
      return false;
    }
    x = static_cast<uint64_t>(d);
  } else if (t == napi_bigint) {
    bool lossless = false;
    napi_get_value_bigint_uint64(env, v, &x, &lossless);
    if (!lossless) {
      ThrowRange(e, std::string(name) + " must fit in 64 unsigned bits");
      return false;
    }
  } else {
    ThrowType(e, std::string(name) + " must be a number or bigint");
    return false;
  }
  if (x > max) {
    ThrowRange(e, std::string(name) + " must be at most " + std::to_string(max));
    return false;
  }
  *out = x;
  return true;
}

}  // namespace sos
