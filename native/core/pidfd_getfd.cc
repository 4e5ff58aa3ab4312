// takeFd(pid, fd): a copy of another process's descriptor (pidfd_getfd,
// 5.6+), close-on-exec. `sosctl run` takes an unmodified program's
// userfaultfd and arena memfd this way: the program's shim names them over a
// plain unix stream socket, so no SCM_RIGHTS (which Node's net lacks) is needed.
// The kernel checks PTRACE_MODE_ATTACH: root, or an ancestor under Yama.
#include <napi.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>

#include "core/common.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace sos {

Napi::Value TakeFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double v[2];
  for (int i = 0; i < 2; i++) {
    if (!info[i].IsNumber()) {
      ThrowType(env, "takeFd(pid, fd): pid and fd must be numbers");
      return env.Undefined();
    }
    v[i] = info[i].As<Napi::Number>().DoubleValue();
    if (!(v[i] >= (i == 0 ? 1 : 0) && v[i] <= 2147483647.0) || std::floor(v[i]) != v[i]) {
      ThrowRange(env, "takeFd(pid, fd): pid must be a positive integer, fd a non-negative one");
      return env.Undefined();
    }
  }
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(v[0]), 0));
  if (pidfd < 0) {
    ThrowSys(env, "pidfd_open", errno);
    return env.Undefined();
  }
  int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, static_cast<int>(v[1]), 0));
  int err = errno;
  close(pidfd);
  if (fd < 0) {
    ThrowSys(env, "pidfd_getfd", err);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

}  // namespace sos
