// The RDMA data path's property access in raw N-API: keys created once per
// env as internalized strings (so a read neither allocates nor interns a key
// string), each field read once, numbers checked without wrapper objects.
#pragma once
#include <node_api.h>

#include <cstdint>

namespace sos {

enum class Key {
  wrId,
  opcode,
  sge,
  signaled,
  imm,
  remoteAddr,
  rkey,
  compareAdd,
  swap,
  ah,
  remoteQpn,
  remoteQkey,
  mr,
  offset,
  length,
  raw,
  status,
  ok,
  byteLen,
  qpNum,
  srcQp,
  count_  // last
};

// The keys of one env, held in a JS array (N-API 8 references only objects).
class DataKeys {
 public:
  // The keys of env (made on first use; freed at env teardown).
  static DataKeys* For(napi_env env);
  napi_value Array() const;
  // A frozen empty array shared by every empty poll.
  napi_value EmptyArray() const;

 private:
  explicit DataKeys(napi_env env);
  ~DataKeys();
  static void Cleanup(void* arg);
  napi_env env_;
  napi_ref keys_ = nullptr;
  napi_ref empty_ = nullptr;
};

// The keys as one native call uses them: each fetched from the array once.
class Keys {
 public:
  explicit Keys(napi_env env) : env_(env), d_(DataKeys::For(env)), arr_(d_->Array()) {}
  napi_value Get(Key k) {
    napi_value& v = cache_[static_cast<int>(k)];
    if (!v) napi_get_element(env_, arr_, static_cast<uint32_t>(k), &v);
    return v;
  }
  // obj[k]; nullptr (read as undefined) when it throws: an exception is then pending.
  napi_value Read(napi_value obj, Key k) {
    napi_value v = nullptr;
    if (napi_get_property(env_, obj, Get(k), &v) != napi_ok) return nullptr;
    return v;
  }
  void Set(napi_value obj, Key k, napi_value v) { napi_set_property(env_, obj, Get(k), v); }
  napi_value EmptyArray() const { return d_->EmptyArray(); }

 private:
  napi_env env_;
  DataKeys* d_;
  napi_value arr_;
  napi_value cache_[static_cast<int>(Key::count_)] = {};
};

// A numeric field: absent (undefined) → 0 and *present false; a Number (a
// non-negative safe integer) or BigInt up to max → *out. Anything else
// throws TypeError/RangeError naming the field and returns false.
bool ReadUint(napi_env env, napi_value v, const char* name, uint64_t max, uint64_t* out, bool* present = nullptr);

// Is v undefined?
inline bool IsUndefined(napi_env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  return v == nullptr || (napi_typeof(env, v, &t) == napi_ok && t == napi_undefined);
}

}  // namespace sos
