// The memory node's wire protocol, version 1 (docs/memory.md is the full
// statement). Little-endian throughout. Every frame starts with an 8-byte
// header {u32 body length, u16 type, u16 flags (0)}; after the handshake the
// body is AES-256-GCM ciphertext followed by a 16-byte tag, the header is the
// associated data and the IV is {u32 0, u64 sequence number of the direction}. Over mutual TLS
// (tls.h) the same frames travel inside TLS records, the body in the clear and no tag.
#pragma once
#include <cstdint>
#include <cstring>

namespace sos::mem {

constexpr uint32_t kMagic = 0x4d534f53;  // "SOSM"
constexpr uint16_t kVersion = 1;
constexpr uint32_t kPage = 4096;
constexpr uint32_t kHeader = 8;
constexpr uint32_t kTag = 16;
constexpr uint32_t kNonce = 32;
constexpr uint32_t kProof = 32;
constexpr uint32_t kMaxName = 64;
constexpr uint32_t kMaxBatch = 256;  // pages per READ or WRITE (1 MiB)

// Handshake frames, in the clear.
constexpr uint16_t T_CLIENT_HELLO = 0x10;  // magic u32, version u16, name len u8, name, nonce[32]
constexpr uint16_t T_SERVER_HELLO = 0x11;  // magic u32, version u16, nonce[32]
constexpr uint16_t T_PROOF = 0x12;         // hmac[32]
constexpr uint16_t T_REFUSE = 0x13;        // status u32
constexpr uint32_t kMaxClientHello = 4 + 2 + 1 + kMaxName + kNonce;
constexpr uint32_t kServerHello = 4 + 2 + kNonce;

// Sealed requests; a reply has type (op | T_REPLY) and starts {u32 id, u32 status}.
constexpr uint16_t T_ALLOC = 0x01;  // id, u64 pages          -> u64 region, u64 pages, u32 lease ms
constexpr uint16_t T_READ = 0x02;   // id, u64 region, u64 first, u32 count -> count pages
constexpr uint16_t T_WRITE = 0x03;  // id, u64 region, u64 first, u32 count, count pages -> -
constexpr uint16_t T_FREE = 0x04;   // id, u64 region         -> -
constexpr uint16_t T_RENEW = 0x05;  // id, u64 region         -> u32 lease ms
constexpr uint16_t T_STATS = 0x06;  // id                     -> u64 capacity, reserved, held, regions (this app)
// id, u64 region, u32 qpn, u32 psn, gid[16] (the client's RC queue pair) -> u32 qpn, u32 psn, gid[16],
// u64 addr, u32 rkey: the node's queue pair, connected to the client's, and the region's pages on it.
constexpr uint16_t T_ATTACH_RDMA = 0x07;
constexpr uint16_t T_LAST = T_ATTACH_RDMA;
constexpr uint16_t T_REPLY = 0x80;

constexpr uint32_t kReqHead = 4;               // id
constexpr uint32_t kRangeReq = 4 + 8 + 8 + 4;  // id, region, first, count
constexpr uint32_t kReplyHead = 8;             // id, status
constexpr uint32_t kEndpoint = 4 + 4 + 16;     // qpn, psn, gid
constexpr uint32_t kAttachReq = 4 + 8 + kEndpoint;
constexpr uint32_t kAttachReply = kEndpoint + 8 + 4;
constexpr uint32_t kMaxReplyExtra = 40;  // the largest reply after its head, READ's pages aside
// Largest sealed body either way: a WRITE of kMaxBatch pages.
constexpr uint32_t kMaxBody = kRangeReq + kMaxBatch * kPage;

enum Status : uint32_t {
  S_OK = 0,
  S_FULL = 1,         // ALLOC: not enough capacity left
  S_NO_REGION = 2,    // no such region for this application (or freed, or lease lapsed)
  S_RANGE = 3,        // pages outside the region, or ALLOC of 0 pages
  S_AUTH = 4,         // REFUSE: proof wrong, unknown application (indistinguishable)
  S_VERSION = 5,      // REFUSE: version not spoken
  S_UNSUPPORTED = 6,  // ATTACH_RDMA: this node serves no RDMA
  S_LIMIT = 7,        // ATTACH_RDMA: the connection or the node has as many attachments as it allows
  S_RDMA = 8,         // ATTACH_RDMA: the node's verbs failed (device, queue pair, registration)
};

inline void Put16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }
inline void Put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
inline void Put64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }
inline uint16_t Get16(const uint8_t* p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}
inline uint32_t Get32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
inline uint64_t Get64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire is little-endian; so is this host");

inline void PutHeader(uint8_t* h, uint32_t len, uint16_t type) {
  Put32(h, len);
  Put16(h + 4, type);
  Put16(h + 6, 0);
}

inline bool ValidName(const uint8_t* p, size_t n) {
  if (n < 1 || n > kMaxName) return false;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace sos::mem
