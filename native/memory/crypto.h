// The memory protocol's cryptography, on the OpenSSL that Node links: the
// handshake proofs (HMAC-SHA256), the per-direction keys (HKDF-SHA256) and
// the AES-256-GCM sealing of frames.
#pragma once
#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sos::mem {

using Bytes = std::vector<uint8_t>;

bool RandomBytes(void* p, size_t n);
// HMAC-SHA256(secret, "sos-memory-v1-proof\0<role>\0" len|clientHello len|serverHello), lengths u32 LE.
void Proof(const Bytes& secret, const char* role, const uint8_t* ch, size_t chLen, const uint8_t* sh, size_t shLen,
           uint8_t out[32]);
bool ProofEqual(const uint8_t* a, const uint8_t* b);  // constant time
// HKDF-SHA256(secret, salt = client nonce | server nonce, info "sos-memory-v1 <dir>") -> 32 bytes.
bool DeriveKey(const Bytes& secret, const uint8_t* cn, const uint8_t* sn, const char* dir, uint8_t out[32]);

// One direction's AES-256-GCM: IV = {u32 0, u64 LE sequence}, header as AAD.
class Gcm {
 public:
  Gcm();
  ~Gcm();
  Gcm(const Gcm&) = delete;
  Gcm& operator=(const Gcm&) = delete;
  void SetKey(const uint8_t key[32], bool encrypt);
  // Start a frame (takes the next sequence number) with its header as AAD.
  bool Begin(const uint8_t* header, size_t headerLen);
  // Encrypt or decrypt len bytes (in may equal out).
  bool Update(const uint8_t* in, uint8_t* out, size_t len);
  // Encrypt: write the tag. Decrypt: check it (false on mismatch).
  bool FinishSeal(uint8_t tag[16]);
  bool FinishOpen(const uint8_t tag[16]);

 private:
  EVP_CIPHER_CTX* ctx_;
  uint8_t key_[32];
  bool enc_ = true;
  uint64_t seq_ = 0;
};

}  // namespace sos::mem
