#include "memory/crypto.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cstring>

namespace sos::mem {

bool RandomBytes(void* p, size_t n) { return RAND_bytes(static_cast<unsigned char*>(p), static_cast<int>(n)) == 1; }

void Proof(const Bytes& secret, const char* role, const uint8_t* ch, size_t chLen, const uint8_t* sh, size_t shLen,
           uint8_t out[32]) {
  std::string label = std::string("sos-memory-v1-proof") + '\0' + role + '\0';
  Bytes msg(label.begin(), label.end());
  auto add = [&](const uint8_t* p, size_t n) {
    uint32_t l = static_cast<uint32_t>(n);
    const uint8_t* lp = reinterpret_cast<const uint8_t*>(&l);
    msg.insert(msg.end(), lp, lp + 4);
    msg.insert(msg.end(), p, p + n);
  };
  add(ch, chLen);
  add(sh, shLen);
  unsigned int len = 32;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), msg.data(), msg.size(), out, &len);
}

bool ProofEqual(const uint8_t* a, const uint8_t* b) { return CRYPTO_memcmp(a, b, 32) == 0; }

bool DeriveKey(const Bytes& secret, const uint8_t* cn, const uint8_t* sn, const char* dir, uint8_t out[32]) {
  uint8_t salt[64];
  memcpy(salt, cn, 32);
  memcpy(salt + 32, sn, 32);
  std::string info = std::string("sos-memory-v1 ") + dir;
  EVP_PKEY_CTX* c = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  if (!c) return false;
  size_t len = 32;
  bool ok = EVP_PKEY_derive_init(c) > 0 && EVP_PKEY_CTX_set_hkdf_md(c, EVP_sha256()) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_salt(c, salt, sizeof salt) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_key(c, secret.data(), static_cast<int>(secret.size())) > 0 &&
            EVP_PKEY_CTX_add1_hkdf_info(c, reinterpret_cast<const unsigned char*>(info.data()),
                                        static_cast<int>(info.size())) > 0 &&
            EVP_PKEY_derive(c, out, &len) > 0 && len == 32;
  EVP_PKEY_CTX_free(c);
  return ok;
}

Gcm::Gcm() : ctx_(EVP_CIPHER_CTX_new()) { memset(key_, 0, sizeof key_); }
Gcm::~Gcm() {
  EVP_CIPHER_CTX_free(ctx_);
  OPENSSL_cleanse(key_, sizeof key_);
}

void Gcm::SetKey(const uint8_t key[32], bool encrypt) {
  memcpy(key_, key, 32);
  enc_ = encrypt;
  seq_ = 0;
  if (enc_)
    EVP_EncryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key_, nullptr);
  else
    EVP_DecryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key_, nullptr);
}

bool Gcm::Begin(const uint8_t* header, size_t headerLen) {
  uint8_t iv[12] = {0};
  memcpy(iv + 4, &seq_, 8);
  seq_++;
  int n = 0;
  if (enc_) {
    if (EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv) != 1) return false;
    return EVP_EncryptUpdate(ctx_, nullptr, &n, header, static_cast<int>(headerLen)) == 1;
  }
  if (EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv) != 1) return false;
  return EVP_DecryptUpdate(ctx_, nullptr, &n, header, static_cast<int>(headerLen)) == 1;
}

bool Gcm::Update(const uint8_t* in, uint8_t* out, size_t len) {
  if (!len) return true;
  int n = 0;
  if (enc_) return EVP_EncryptUpdate(ctx_, out, &n, in, static_cast<int>(len)) == 1;
  return EVP_DecryptUpdate(ctx_, out, &n, in, static_cast<int>(len)) == 1;
}

bool Gcm::FinishSeal(uint8_t tag[16]) {
  int n = 0;
  uint8_t dummy[16];
  return EVP_EncryptFinal_ex(ctx_, dummy, &n) == 1 && EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
}

bool Gcm::FinishOpen(const uint8_t tag[16]) {
  int n = 0;
  uint8_t dummy[16];
  if (EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_SET_TAG, 16, const_cast<uint8_t*>(tag)) != 1) return false;
  return EVP_DecryptFinal_ex(ctx_, dummy, &n) == 1;
}

}  // namespace sos::mem
