#include "uffd/page_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/common.h"

namespace sos {

int PageSource::FetchV(Io* ios, size_t n) {
  int first = 0;
  for (size_t i = 0; i < n; i++) {
    ios[i].result = Fetch(ios[i].off, ios[i].buf, ios[i].len);
    if (ios[i].result < 0 && !first) first = ios[i].result;
  }
  return first;
}

int PageSource::StoreV(Io* ios, size_t n) {
  int first = 0;
  for (size_t i = 0; i < n; i++) {
    ios[i].result = Store(ios[i].off, ios[i].buf, ios[i].len);
    if (ios[i].result < 0 && !first) first = ios[i].result;
  }
  return first;
}

int ZeroSource::Fetch(uint64_t, void* buf, uint64_t len) {
  memset(buf, 0, len);
  return 0;
}

const void* RegionSource::Direct(uint64_t off, uint64_t len) {
  Mapping* m = pin_.get();
  if (off >= m->size || len > m->size - off || !m->holes.Empty()) return nullptr;
  return m->base + off;
}

int RegionSource::Fetch(uint64_t off, void* buf, uint64_t len) {
  Mapping* m = pin_.get();
  if (!m->holes.Empty()) return -EFAULT;
  uint64_t n = off < m->size ? std::min(len, m->size - off) : 0;
  if (n) memcpy(buf, m->base + off, n);
  if (n < len) memset(static_cast<uint8_t*>(buf) + n, 0, len - n);
  return 0;
}

int RegionSource::Store(uint64_t off, const void* buf, uint64_t len) {
  Mapping* m = pin_.get();
  if (off >= m->size || len > m->size - off || !m->holes.Empty()) return -ERANGE;
  memcpy(m->base + off, buf, len);
  return 0;
}

FileSource::~FileSource() {
  if (fd_ >= 0) close(fd_);
}

int FileSource::Fetch(uint64_t off, void* buf, uint64_t len) {
  uint8_t* p = static_cast<uint8_t*>(buf);
  uint64_t done = 0;
  while (done < len) {
    if (off + done >= size_) break;
    uint64_t want = std::min(len - done, size_ - (off + done));
    ssize_t r = pread(fd_, p + done, want, static_cast<off_t>(offset_ + off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;  // file shorter than declared: the rest reads as zeros
    done += static_cast<uint64_t>(r);
  }
  if (done < len) memset(p + done, 0, len - done);
  return 0;
}

int FileSource::Store(uint64_t off, const void* buf, uint64_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(buf);
  uint64_t done = 0;
  while (done < len) {
    ssize_t r = pwrite(fd_, p + done, len - done, static_cast<off_t>(offset_ + off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    done += static_cast<uint64_t>(r);
  }
  return 0;
}

static const napi_type_tag kSourceTag = {0x2c3d4e5f60718293ULL, 0xa4b5c6d7e8f90a1bULL};

SourceWrap* SourceWrap::Unwrap(Napi::Value v) { return UnwrapTagged<SourceWrap>(v, &kSourceTag); }

Napi::Function SourceWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativeSource",
                     {InstanceMethod("info", &SourceWrap::Info), InstanceMethod("read", &SourceWrap::Read),
                      InstanceMethod("close", &SourceWrap::Close)});
}

SourceWrap::SourceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SourceWrap>(info) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kSourceTag);
  if (!info[0].IsObject()) {
    ThrowType(env, "source spec must be an object");
    return;
  }
  Napi::Object o = info[0].As<Napi::Object>();
  std::string kind = o.Get("kind").IsString() ? o.Get("kind").As<Napi::String>().Utf8Value() : "";
  if (kind == "zero") {
    source_ = std::make_shared<ZeroSource>();
  } else if (kind == "region") {
    RegionWrap* r = RegionWrap::Unwrap(o.Get("region"));
    if (!r) {
      ThrowType(env, "region must be a Region");
      return;
    }
    if (!r->mapping()) {
      ThrowState(env, "ERR_CLOSED", "region is closed");
      return;
    }
    Lock lock(RegistryMutex());
    if (r->mapping()->busy) {
      ThrowState(env, "ERR_BUSY", "region is being unmapped or moved");
      return;
    }
    source_ = std::make_shared<RegionSource>(r->mapping());
  } else if (kind == "file") {
    uint64_t fd, offset = 0, size = 0;
    if (!ToU64(env, o.Get("fd"), "fd", &fd)) return;
    if (!o.Get("offset").IsUndefined() && !ToU64(env, o.Get("offset"), "offset", &offset)) return;
    if (fd > INT32_MAX) {
      ThrowRange(env, "fd out of range");
      return;
    }
    struct stat st;
    if (fstat(static_cast<int>(fd), &st) != 0) {
      ThrowSys(env, "fstat", errno);
      return;
    }
    if (!o.Get("size").IsUndefined()) {
      if (!ToU64(env, o.Get("size"), "size", &size)) return;
    } else {
      size = st.st_size > static_cast<off_t>(offset) ? static_cast<uint64_t>(st.st_size) - offset : 0;
    }
    int d = fcntl(static_cast<int>(fd), F_DUPFD_CLOEXEC, 0);
    if (d < 0) {
      ThrowSys(env, "fcntl(F_DUPFD_CLOEXEC)", errno);
      return;
    }
    source_ = std::make_shared<FileSource>(d, offset, size);
  } else {
    ThrowType(env, "source kind must be 'zero', 'region' or 'file'");
  }
}

Napi::Value SourceWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("closed", !source_);
  if (source_) {
    o.Set("kind", source_->Kind());
    o.Set("size", FromU64(env, source_->Size() == UINT64_MAX ? 0 : source_->Size()));
  }
  return o;
}

// read(offset, length) -> Buffer: what a fault would receive (diagnostics).
Napi::Value SourceWrap::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!source_) {
    ThrowState(env, "ERR_CLOSED", "source is closed");
    return env.Undefined();
  }
  uint64_t off, len;
  if (!ToU64(env, info[0], "offset", &off) || !ToU64(env, info[1], "length", &len)) return env.Undefined();
  if (len > (64u << 20)) {
    ThrowRange(env, "read at most 64 MiB at a time");
    return env.Undefined();
  }
  auto buf = Napi::Buffer<uint8_t>::New(env, len);
  int r = source_->Fetch(off, buf.Data(), len);
  if (r < 0) {
    ThrowSys(env, "source.fetch", -r);
    return env.Undefined();
  }
  return buf;
}

// close(): engines that use the source keep it until they stop.
Napi::Value SourceWrap::Close(const Napi::CallbackInfo& info) {
  source_.reset();
  return info.Env().Undefined();
}

}  // namespace sos
