// The state of one userfaultfd shared by its JS handle and a fault engine.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>

#include "uffd/interval_map.h"
#include "uffd/mapping.h"

namespace sos {

struct Registration {
  uint64_t mode = 0;                 // UFFDIO_REGISTER_MODE_*
  std::shared_ptr<Mapping> mapping;  // own-process registrations only
};

struct UffdCore {
  int fd = -1;
  bool ownProcess = true;  // registered ranges are in our address space
  uint64_t features = 0;   // what UFFDIO_API granted (or inherited)
  uint64_t ioctls = 0;     // what UFFDIO_API reported
  bool apiDone = false;
  napi_env ownerEnv = nullptr;  // the JS thread that must handle its faults
  std::atomic<bool> engineActive{false};
  // Registered ranges (guarded by RegistryMutex()).
  IntervalMap<Registration> regs;
};

// All open userfaultfds of this process (guarded by RegistryMutex()).
std::set<UffdCore*>& AllUffds();

// True when some uffd owned by `env` and not served by an engine covers any
// of [start,end): touching it from env's thread would deadlock.
bool WouldDeadlockLocked(napi_env env, uint64_t start, uint64_t end);
// True when [start,end) is registered with any open uffd.
bool IsRegisteredLocked(uint64_t start, uint64_t end);

}  // namespace sos
