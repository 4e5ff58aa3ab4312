// fuzz-sources: native/memory/frame.cc
// libFuzzer target over the memory node's frame parsers (native/memory/frame.cc), run by
// scripts/fuzz-native.sh memory-frame. Byte 0 picks the mode. Below 0x80 the rest is what a client
// sends, a stream of frames cut as Server::Process cuts them, starting in phase byte0 % 3 (hello,
// proof, authenticated). From 0x80 on, bytes 1-2 are a type and the rest one body, handed to the
// hello and request parsers directly at any length (the server's header check never lets them see
// most of those lengths: they must hold up anyway). A sealed body is taken as already decrypted (the tag's 16 bytes are
// skipped): the GCM check is OpenSSL's, the parsing after it is ours. Every header and body is
// copied into a heap block of exactly its size, so a read one byte past it is an ASan report.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "memory/frame.h"

using namespace sos::mem;

#define CHECK(c)                                                   \
  do {                                                             \
    if (!(c)) {                                                    \
      fprintf(stderr, "memory-frame: invariant broken: %s\n", #c); \
      abort();                                                     \
    }                                                              \
  } while (0)

namespace {

std::unique_ptr<uint8_t[]> Exact(const uint8_t* p, size_t n) {
  std::unique_ptr<uint8_t[]> b(new uint8_t[n ? n : 1]);
  if (n) memcpy(b.get(), p, n);
  return b;
}

bool Inside(const uint8_t* p, size_t n, const uint8_t* b, size_t len) {
  return p >= b && p <= b + len && n <= size_t(b + len - p);
}

void CheckHello(const uint8_t* b, size_t len) {
  ClientHello h;
  HelloFault f = ParseClientHello(b, len, &h);
  if (f == HelloFault::kVersion) CHECK(h.version != kVersion);
  if (f != HelloFault::kNone) return;
  CHECK(len >= 4 && Get32(b) == kMagic);
  CHECK(h.version == kVersion);
  CHECK(h.nameLen >= 1 && h.nameLen <= kMaxName);
  CHECK(h.name == b + 7 && Inside(h.name, h.nameLen, b, len));
  CHECK(ValidName(h.name, h.nameLen));
  CHECK(h.nonce == h.name + h.nameLen && h.nonce + kNonce == b + len);
}

void CheckRequest(uint16_t type, const uint8_t* b, size_t len) {
  ParsedRequest q;
  RequestFault f = ParseRequest(type, b, len, &q);
  ParsedRequest again;
  CHECK(ParseRequest(type, b, len, &again) == f);  // no hidden state
  // Fault texts are built for every outcome (the server logs them).
  (void)RequestFaultText(f, type, len, q);
  if (f == RequestFault::kCount) {
    CHECK(type == T_READ || type == T_WRITE);
    CHECK(q.count == 0 || q.count > kMaxBatch);
    return;
  }
  if (f != RequestFault::kNone) return;
  CHECK(type >= T_ALLOC && type <= T_LAST);
  CHECK(q.type == type && q.id == Get32(b));
  CHECK(len <= kMaxBody);
  switch (type) {
    case T_ALLOC:
    case T_FREE:
    case T_RENEW: CHECK(len == kReqHead + 8); break;
    case T_STATS: CHECK(len == kReqHead); break;
    case T_ATTACH_RDMA:
      CHECK(len == kAttachReq && q.endpoint == b + 12 && Inside(q.endpoint, kEndpoint, b, len));
      CHECK(q.endpoint + kEndpoint == b + len);
      break;
    case T_READ:
    case T_WRITE: {
      CHECK(q.count >= 1 && q.count <= kMaxBatch);
      if (type == T_READ) {
        CHECK(len == kRangeReq && q.data == nullptr && q.dataLen == 0);
      } else {
        CHECK(q.dataLen == size_t(q.count) * kPage && len == kRangeReq + q.dataLen);
        CHECK(q.data == b + kRangeReq && Inside(q.data, q.dataLen, b, len));
        volatile uint8_t sink = q.data[0] ^ q.data[q.dataLen - 1];  // both ends are readable
        (void)sink;
      }
      // The range check agrees with exact arithmetic, for region sizes around the range's end.
      unsigned __int128 end = (unsigned __int128)q.first + q.count;
      uint64_t sizes[] = {0, 1, q.first, q.first + q.count - 1, q.first + q.count, UINT64_MAX, q.region};
      for (uint64_t pages : sizes) CHECK(RangeWithin(q.first, q.count, pages) == (end <= pages));
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 0x80) {
    if (size < 3) return 0;
    auto body = Exact(data + 3, size - 3);
    CheckHello(body.get(), size - 3);
    CheckRequest(Get16(data + 1), body.get(), size - 3);
    return 0;
  }
  WirePhase phase = data[0] % 3 == 0 ? WirePhase::kHello : data[0] % 3 == 1 ? WirePhase::kProof : WirePhase::kAuth;
  size_t pos = 1;
  while (size - pos >= kHeader) {
    auto h = Exact(data + pos, kHeader);
    FrameHeader fh;
    HeaderFault hf = ParseHeader(h.get(), phase, &fh);
    (void)HeaderFaultText(hf, fh);
    if (hf != HeaderFault::kNone) return 0;  // the server closes the connection here
    CHECK(fh.flags == 0);
    if (phase == WirePhase::kAuth) {
      CHECK(fh.type >= T_ALLOC && fh.type <= T_LAST && fh.len >= kReqHead && fh.len <= kMaxBody);
    } else if (phase == WirePhase::kHello) {
      CHECK(fh.type == T_CLIENT_HELLO && fh.len <= kMaxClientHello);
    } else {
      CHECK(fh.type == T_PROOF && fh.len == kProof);
    }
    size_t whole = FrameBytes(fh, phase);
    CHECK(whole == kHeader + fh.len + (phase == WirePhase::kAuth ? kTag : 0));
    if (size - pos < whole) return 0;  // the server waits for the rest
    auto body = Exact(data + pos + kHeader, fh.len);
    if (phase == WirePhase::kHello) {
      CheckHello(body.get(), fh.len);
      ClientHello hello;
      if (ParseClientHello(body.get(), fh.len, &hello) != HelloFault::kNone) return 0;
      phase = WirePhase::kProof;
    } else if (phase == WirePhase::kProof) {
      phase = WirePhase::kAuth;  // the proof is an HMAC: nothing to parse
    } else {
      CheckRequest(fh.type, body.get(), fh.len);
      ParsedRequest q;
      if (ParseRequest(fh.type, body.get(), fh.len, &q) != RequestFault::kNone) return 0;
    }
    pos += whole;
  }
  // Whatever is left is a partial header: the parsers were never given it.
  return 0;
}
