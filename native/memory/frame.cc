#include "memory/frame.h"

namespace sos::mem {

// The shortest client hello: a one-byte name.
static constexpr uint32_t kMinClientHello = 4 + 2 + 1 + 1 + kNonce;

HeaderFault ParseHeader(const uint8_t* h, WirePhase phase, FrameHeader* out) {
  out->len = Get32(h);
  out->type = Get16(h + 4);
  out->flags = Get16(h + 6);
  if (out->flags != 0) return HeaderFault::kFlags;
  if (phase != WirePhase::kAuth) {
    uint32_t lo, hi;
    if (phase == WirePhase::kHello && out->type == T_CLIENT_HELLO) {
      lo = kMinClientHello;
      hi = kMaxClientHello;
    } else if (phase == WirePhase::kProof && out->type == T_PROOF) {
      lo = hi = kProof;
    } else {
      return HeaderFault::kHandshakeType;
    }
    if (out->len < lo || out->len > hi) return HeaderFault::kHandshakeLength;
    return HeaderFault::kNone;
  }
  if (out->type < T_ALLOC || out->type > T_LAST) return HeaderFault::kRequestType;
  if (out->len < kReqHead || out->len > kMaxBody) return HeaderFault::kRequestLength;
  return HeaderFault::kNone;
}

size_t FrameBytes(const FrameHeader& h, WirePhase phase, bool sealed) {
  return size_t(kHeader) + h.len + (phase == WirePhase::kAuth && sealed ? kTag : 0);
}

std::string HeaderFaultText(HeaderFault f, const FrameHeader& h) {
  switch (f) {
    case HeaderFault::kNone: return "";
    case HeaderFault::kFlags: return "frame flags must be 0";
    case HeaderFault::kHandshakeType: return "unexpected frame type " + std::to_string(h.type) + " in the handshake";
    case HeaderFault::kHandshakeLength: return "handshake frame length " + std::to_string(h.len) + " out of bounds";
    case HeaderFault::kRequestType: return "unknown request type " + std::to_string(h.type);
    case HeaderFault::kRequestLength: return "request length " + std::to_string(h.len) + " out of bounds";
  }
  return "bad frame header";
}

HelloFault ParseClientHello(const uint8_t* b, size_t len, ClientHello* out) {
  *out = ClientHello{};
  // Each field is bounds-checked as it is reached, so the order of the checks is the server's
  // (magic, version, the rest) for any length.
  if (len < 4) return HelloFault::kMalformed;
  if (Get32(b) != kMagic) return HelloFault::kMagic;
  if (len < 6) return HelloFault::kMalformed;
  out->version = Get16(b + 4);
  if (out->version != kVersion) return HelloFault::kVersion;
  if (len < 7) return HelloFault::kMalformed;
  uint8_t nl = b[6];
  if (len != 7u + nl + kNonce || !ValidName(b + 7, nl)) return HelloFault::kMalformed;
  out->name = b + 7;
  out->nameLen = nl;
  out->nonce = b + 7 + nl;
  return HelloFault::kNone;
}

RequestFault ParseRequest(uint16_t type, const uint8_t* b, size_t len, ParsedRequest* out) {
  *out = ParsedRequest{};
  out->type = type;
  if (len < kReqHead) return RequestFault::kLength;
  out->id = Get32(b);
  switch (type) {
    case T_ALLOC:
      if (len != kReqHead + 8) return RequestFault::kLength;
      out->pages = Get64(b + 4);
      return RequestFault::kNone;
    case T_READ:
    case T_WRITE: {
      if (len < kRangeReq) return RequestFault::kLength;
      out->region = Get64(b + 4);
      out->first = Get64(b + 12);
      out->count = Get32(b + 20);
      if (out->count == 0 || out->count > kMaxBatch) return RequestFault::kCount;
      // count <= kMaxBatch: the product fits, and a WRITE is at most kMaxBody.
      size_t want = type == T_READ ? kRangeReq : kRangeReq + size_t(out->count) * kPage;
      if (len != want) return RequestFault::kLength;
      if (type == T_WRITE) {
        out->data = b + kRangeReq;
        out->dataLen = size_t(out->count) * kPage;
      }
      return RequestFault::kNone;
    }
    case T_FREE:
    case T_RENEW:
      if (len != kReqHead + 8) return RequestFault::kLength;
      out->region = Get64(b + 4);
      return RequestFault::kNone;
    case T_ATTACH_RDMA:
      if (len != kAttachReq) return RequestFault::kLength;
      out->region = Get64(b + 4);
      out->endpoint = b + 12;
      return RequestFault::kNone;
    case T_STATS:
      if (len != kReqHead) return RequestFault::kLength;
      return RequestFault::kNone;
  }
  return RequestFault::kLength;
}

std::string RequestFaultText(RequestFault f, uint16_t type, size_t len, const ParsedRequest& r) {
  if (f == RequestFault::kNone) return "";
  if (f == RequestFault::kCount) return "page count " + std::to_string(r.count) + " out of bounds";
  return "request type " + std::to_string(type) + " with length " + std::to_string(len);
}

}  // namespace sos::mem
