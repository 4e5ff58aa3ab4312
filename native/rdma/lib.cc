#include "rdma/lib.h"

#include <dlfcn.h>

#include <mutex>

namespace sos {

const Verbs* LoadVerbs(std::string* why) {
  static Verbs verbs;
  static std::string error;
  static bool ok = false;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      error =
          std::string("libibverbs.so.1 is not installed (apt-get install libibverbs1 ibverbs-providers): ") + dlerror();
      return;
    }
#define SOS_LOAD(name, ret, args)                                     \
  verbs.name = reinterpret_cast<ret(*) args>(dlsym(h, "ibv_" #name)); \
  if (!verbs.name) {                                                  \
    error = "libibverbs.so.1 lacks ibv_" #name;                       \
    return;                                                           \
  }
    SOS_VERBS_FUNCTIONS(SOS_LOAD)
#undef SOS_LOAD
    ok = true;
  });
  if (!ok && why) *why = error;
  return ok ? &verbs : nullptr;
}

}  // namespace sos
