// A connected pair of AF_UNIX SOCK_SEQPACKET sockets (Node's net cannot make
// one). One end stays here, non-blocking and read through a libuv poll; the
// other is handed to a child process (e.g. `criu swrk 3`) and then closed
// here. Messages are whole datagrams: recv() returns exactly one.
#pragma once
#include <napi.h>

namespace sos {

Napi::Function InitSeqPacket(Napi::Env env);

}  // namespace sos
