// Parsing and validation of what a memory-node client sends (protocol.h): pure functions over bytes,
// with no N-API, no OpenSSL and no sockets, so the server and the libFuzzer target
// (test/fuzz/native/memory-frame.cc) run the same code. Nothing here reads past the length it is given.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "memory/protocol.h"

namespace sos::mem {

// What the connection expects next: the two handshake frames, then sealed requests.
enum class WirePhase : uint8_t { kHello, kProof, kAuth };

struct FrameHeader {
  uint32_t len = 0;
  uint16_t type = 0, flags = 0;
};

enum class HeaderFault : uint8_t {
  kNone,
  kFlags,            // flags not 0
  kHandshakeType,    // not the frame the handshake expects now
  kHandshakeLength,  // a handshake frame outside its type's bounds
  kRequestType,      // not a request type
  kRequestLength,    // shorter than an id or longer than the largest WRITE
};

// Read and check the kHeader bytes at h. On kNone, the frame occupies FrameBytes(out, phase) bytes.
HeaderFault ParseHeader(const uint8_t* h, WirePhase phase, FrameHeader* out);
// Header, body and (after the handshake, unless TLS carries the frames) the tag.
size_t FrameBytes(const FrameHeader& h, WirePhase phase, bool sealed = true);
// The server's log line for a fault (the same words it always used).
std::string HeaderFaultText(HeaderFault f, const FrameHeader& h);

struct ClientHello {
  uint16_t version = 0;
  const uint8_t* name = nullptr;  // inside the body, nameLen bytes
  uint8_t nameLen = 0;
  const uint8_t* nonce = nullptr;  // inside the body, kNonce bytes, ending it
};

enum class HelloFault : uint8_t {
  kNone,
  kMagic,      // not "SOSM"
  kVersion,    // a version this node does not speak (refused, not a bad frame)
  kMalformed,  // length, name
};

// Checked in this order: magic, version, then length and name (a wrong version is refused even when
// the rest would not parse as version 1). `version` is set whenever the body holds one.
HelloFault ParseClientHello(const uint8_t* b, size_t len, ClientHello* out);

// One decrypted request body. Pointers point into it.
struct ParsedRequest {
  uint16_t type = 0;
  uint32_t id = 0;
  uint64_t pages = 0;             // ALLOC
  uint64_t region = 0;            // READ, WRITE, FREE, RENEW, ATTACH_RDMA
  uint64_t first = 0;             // READ, WRITE
  uint32_t count = 0;             // READ, WRITE: 1..kMaxBatch
  const uint8_t* data = nullptr;  // WRITE: count pages
  size_t dataLen = 0;
  const uint8_t* endpoint = nullptr;  // ATTACH_RDMA: the client's qpn, psn, gid (kEndpoint bytes)
};

enum class RequestFault : uint8_t {
  kNone,
  kLength,  // not this type's exact length
  kCount,   // READ/WRITE count 0 or over kMaxBatch (out->count says which)
};

// Any type outside T_ALLOC..T_LAST is a kLength fault (ParseHeader refuses those first).
RequestFault ParseRequest(uint16_t type, const uint8_t* b, size_t len, ParsedRequest* out);
std::string RequestFaultText(RequestFault f, uint16_t type, size_t len, const ParsedRequest& r);

// Whether pages [first, first + count) lie inside a region of `pages` pages, without computing a sum
// that could wrap.
inline bool RangeWithin(uint64_t first, uint32_t count, uint64_t pages) {
  return first < pages && count <= pages - first;
}

}  // namespace sos::mem
