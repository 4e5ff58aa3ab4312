// JS handles on the memory node (NativeMemoryNode) and on a connection to
// one (NativeRemote, whose PageSource a FaultEngine can serve from).
#pragma once
#include <napi.h>

namespace sos {
void InitMemory(Napi::Env env, Napi::Object exports);
}  // namespace sos
