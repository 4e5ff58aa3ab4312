// peerCred(fd): the credentials of the process that connected a unix socket
// (SO_PEERCRED), which Node does not expose. sosd checks them on every
// connection: the socket's file mode is one wall, the peer's uid another.
#include <napi.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cmath>

#include "core/common.h"

namespace sos {

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    ThrowType(env, "peerCred(fd): fd must be a number");
    return env.Undefined();
  }
  double v = info[0].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= 2147483647.0) || std::floor(v) != v) {
    ThrowRange(env, "peerCred(fd): fd must be an integer in [0, 2147483647]");
    return env.Undefined();
  }
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(static_cast<int>(v), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    ThrowSys(env, "getsockopt(SO_PEERCRED)", errno);
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

}  // namespace sos
