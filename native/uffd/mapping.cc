#include "uffd/mapping.h"

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <map>

#include "core/offthread.h"
#include "uffd/uffd_abi.h"
#include "uffd/uffd_core.h"

namespace sos {

namespace {
std::map<uint64_t, std::weak_ptr<Mapping>>& ById() {
  static auto* m = new std::map<uint64_t, std::weak_ptr<Mapping>>();
  return *m;
}
std::atomic<uint64_t> g_nextId{1};
constexpr uint64_t kMaxView = 1ULL << 32;

void FinalizeView(Napi::Env env, void*, ViewHold* v) {
  {
    Lock lock(RegistryMutex());
    if (v->mapping) v->mapping->views.erase(v);
    v->mapping.reset();
  }
  if (v->ab) napi_delete_reference(env, v->ab);
  delete v;
}
}  // namespace

std::recursive_mutex& RegistryMutex() {
  static auto* mu = new std::recursive_mutex();
  return *mu;
}

void DetachViewLocked(ViewHold* v) {
  napi_value ab = nullptr;
  if (v->ab && napi_get_reference_value(v->env, v->ab, &ab) == napi_ok && ab) {
    bool detached = true;
    napi_is_detached_arraybuffer(v->env, ab, &detached);
    if (!detached) napi_detach_arraybuffer(v->env, ab);
  }
  if (v->mapping) v->mapping->views.erase(v);
  std::shared_ptr<Mapping> drop = std::move(v->mapping);  // may run ~Mapping (lock is recursive)
}

bool DetachViewsLocked(Mapping* m, napi_env env) {
  for (ViewHold* v : m->views)
    if (v->env != env) return false;
  for (ViewHold* v : std::set<ViewHold*>(m->views)) DetachViewLocked(v);
  return true;
}

Mapping::~Mapping() {
  // Unmap only what is still ours: a hole may hold someone else's mapping now.
  if (base) {
    uint64_t at = 0;
    for (const auto& h : holes.All()) {
      if (h.start > at) munmap(base + at, h.start - at);
      at = h.end;
    }
    if (at < size) munmap(base + at, size - at);
  }
  if (ownedFd >= 0) close(ownedFd);
  Lock lock(RegistryMutex());
  ById().erase(id);
}

std::shared_ptr<Mapping> FindMappingLocked(uint64_t addr, uint64_t len) {
  for (auto& kv : ById()) {
    auto m = kv.second.lock();
    if (!m || !m->base) continue;
    uint64_t b = m->Addr();
    if (addr >= b && addr + len <= b + m->size && addr + len >= addr) return m;
  }
  return nullptr;
}

std::shared_ptr<Mapping> FindMappingById(uint64_t id) {
  Lock lock(RegistryMutex());
  auto it = ById().find(id);
  return it == ById().end() ? nullptr : it->second.lock();
}

std::shared_ptr<Mapping> AccessibleMapping(Napi::Env env, const Napi::Value& v, uint64_t off, uint64_t len) {
  RegionWrap* r = RegionWrap::Unwrap(v);
  if (!r) {
    ThrowType(env, "first argument must be a Region");
    return nullptr;
  }
  auto m = r->mapping();
  if (!m) {
    ThrowState(env, "ERR_CLOSED", "region is closed");
    return nullptr;
  }
  Lock lock(RegistryMutex());
  if (m->busy) {
    ThrowState(env, "ERR_BUSY", "region is being unmapped or moved");
    return nullptr;
  }
  if (off > m->size || (len != kWholeRegion && len > m->size - off)) {
    ThrowRange(env, "range is outside the region");
    return nullptr;
  }
  uint64_t end = len == kWholeRegion ? m->size : off + len;
  if (!m->holes.Overlapping(off, end).empty() || !m->restricted.Overlapping(off, end).empty()) {
    ThrowState(env, "ERR_PROTECTED", "range has unmapped or protected pages: touching them would crash");
    return nullptr;
  }
  return m;
}

static const napi_type_tag kRegionTag = {0x5e4b1d2c3a4f5061ULL, 0x7a8b9cadbecfd0e1ULL};

RegionWrap* RegionWrap::Unwrap(Napi::Value v) { return UnwrapTagged<RegionWrap>(v, &kRegionTag); }

Napi::Function RegionWrap::Init(Napi::Env env) {
  return DefineClass(env, "NativeRegion",
                     {
                         InstanceMethod("buffer", &RegionWrap::Buffer),
                         InstanceMethod("address", &RegionWrap::Address),
                         InstanceMethod("size", &RegionWrap::Size),
                         InstanceMethod("id", &RegionWrap::Id),
                         InstanceMethod("fd", &RegionWrap::Fd),
                         InstanceMethod("info", &RegionWrap::Info),
                         InstanceMethod("mprotect", &RegionWrap::Mprotect),
                         InstanceMethod("madvise", &RegionWrap::Madvise),
                         InstanceMethod("unmap", &RegionWrap::Unmap),
                         InstanceMethod("remap", &RegionWrap::Remap),
                         InstanceMethod("close", &RegionWrap::Close),
                         InstanceMethod("isClosed", &RegionWrap::IsClosed),
                     });
}

// new NativeRegion({ kind, size, name?, hugetlb?, fd?, offset?, shared?, id? })
RegionWrap::RegionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RegionWrap>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kRegionTag);
  if (!info[0].IsObject()) {
    ThrowType(env, "region spec must be an object");
    return;
  }
  Napi::Object spec = info[0].As<Napi::Object>();
  std::string kind = spec.Get("kind").IsString() ? spec.Get("kind").As<Napi::String>().Utf8Value() : "";

  if (kind == "attach") {
    uint64_t id;
    if (!ToU64(env, spec.Get("id"), "id", &id)) return;
    auto m = FindMappingById(id);
    if (!m) {
      ThrowState(env, "ERR_CLOSED", "no live region with id " + std::to_string(id) + " to attach to");
      return;
    }
    mapping_ = m;
    {
      Lock lock(RegistryMutex());
      m->handles++;
    }
    Track(env, this);
    return;
  }

  uint64_t size;
  if (!ToU64(env, spec.Get("size"), "size", &size)) return;
  bool hugetlb = spec.Get("hugetlb").ToBoolean();
  uint64_t page = hugetlb ? (2u << 20) : static_cast<uint64_t>(PageSize());
  if (kind == "file" && spec.Get("fd").IsNumber()) {
    // A hugetlbfs file (a hugetlb memfd, say) maps in its own page size.
    struct statfs sfs;
    int64_t f = spec.Get("fd").As<Napi::Number>().Int64Value();
    if (f >= 0 && f <= INT32_MAX && fstatfs(static_cast<int>(f), &sfs) == 0 &&
        sfs.f_type == static_cast<decltype(sfs.f_type)>(0x958458f6)) {
      hugetlb = true;
      page = static_cast<uint64_t>(sfs.f_bsize);
    }
  }
  if (size == 0 || size % page) {
    ThrowRange(env, "size must be a positive multiple of the page size (" + std::to_string(page) + ")");
    return;
  }
  auto m = std::make_shared<Mapping>();
  m->pageSize = page;
  m->hugetlb = hugetlb;
  int fd = -1;
  uint64_t offset = 0;
  int flags = 0;
  if (kind == "anonymous") {
    flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (hugetlb ? MAP_HUGETLB : 0);
  } else if (kind == "memfd") {
    std::string name = spec.Get("name").IsString() ? spec.Get("name").As<Napi::String>().Utf8Value() : "sos-region";
    unsigned mfd = MFD_CLOEXEC | (hugetlb ? (MFD_HUGETLB | MFD_HUGE_2MB) : 0);
    fd = memfd_create(name.c_str(), mfd);
    if (fd < 0) {
      ThrowSys(env, "memfd_create", errno);
      return;
    }
    if (ftruncate(fd, size) != 0) {
      int e = errno;
      close(fd);
      ThrowSys(env, "ftruncate", e);
      return;
    }
    m->ownedFd = fd;
    m->shared = true;
    flags = MAP_SHARED;
  } else if (kind == "file") {
    uint64_t ufd;
    if (!ToU64(env, spec.Get("fd"), "fd", &ufd)) return;
    if (!spec.Get("offset").IsUndefined() && !ToU64(env, spec.Get("offset"), "offset", &offset)) return;
    if (ufd > INT32_MAX) {
      ThrowRange(env, "fd out of range");
      return;
    }
    if (offset % page) {
      ThrowRange(env, "offset must be a multiple of the page size");
      return;
    }
    fd = static_cast<int>(ufd);
    m->shared = spec.Get("shared").IsUndefined() ? true : spec.Get("shared").ToBoolean().Value();
    flags = m->shared ? MAP_SHARED : MAP_PRIVATE;
  } else {
    ThrowType(env, "region kind must be 'anonymous', 'memfd', 'file' or 'attach'");
    return;
  }
  m->kind = kind;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    ThrowSys(env, "mmap", errno, hugetlb ? "hugetlb pages may not be reserved (vm.nr_hugepages)" : "");
    return;  // m's destructor closes the memfd
  }
  m->base = static_cast<uint8_t*>(p);
  m->size = size;
  m->id = g_nextId++;
  {
    Lock lock(RegistryMutex());
    ById()[m->id] = m;
    m->handles = 1;
  }
  mapping_ = m;
  Track(env, this);
}

RegionWrap::~RegionWrap() { DoClose(true); }

bool RegionWrap::Live(Napi::Env env) {
  if (!mapping_) {
    ThrowState(env, "ERR_CLOSED", "region is closed");
    return false;
  }
  return true;
}

// Close this handle: detach its view (a teardown or GC leaves a view that
// outlives us valid instead, since it holds the mapping), drop the mapping.
void RegionWrap::DoClose(bool teardown) {
  if (!mapping_) return;
  {
    Lock lock(RegistryMutex());
    if (!teardown && mapping_->views.count(view_)) DetachViewLocked(view_);
    view_ = nullptr;
    mapping_->handles--;
    mapping_.reset();
  }
  Untrack(Napi::Env(env_), this);
}

Napi::Value RegionWrap::Buffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  Lock lock(RegistryMutex());
  Mapping* m = mapping_.get();
  if (view_ && m->views.count(view_)) {
    napi_value ab;
    if (napi_get_reference_value(env, view_->ab, &ab) == napi_ok && ab) return Napi::Value(env, ab);
  }
  if (m->busy) {
    ThrowState(env, "ERR_BUSY", "region is being unmapped or moved");
    return env.Undefined();
  }
  if (!m->holes.Empty()) {
    ThrowState(env, "ERR_UNMAPPED", "region has unmapped pages; it has no single view any more");
    return env.Undefined();
  }
  if (!m->restricted.Empty()) {
    ThrowState(env, "ERR_PROTECTED",
               "region has pages without read+write access; mprotect them back to 'rw' to get a view");
    return env.Undefined();
  }
  if (WouldDeadlockLocked(env_, m->Addr(), m->Addr() + m->size)) {
    ThrowState(env, "ERR_DEADLOCK",
               "region is registered with a userfaultfd whose faults this JavaScript thread must handle; "
               "touching it here would block this thread forever. Serve it with a FaultEngine, or touch it "
               "from a worker thread or another process");
    return env.Undefined();
  }
  // V8 caps an ArrayBuffer at 4 GiB here; larger regions are used through
  // the engine, touch() and sub-regions, not one view.
  if (m->size > kMaxView) {
    ThrowState(env, "ERR_TOO_LARGE",
               "region of " + std::to_string(m->size) + " bytes is larger than the " + std::to_string(kMaxView) +
                   " bytes one ArrayBuffer can view");
    return env.Undefined();
  }
  auto* v = new ViewHold{mapping_, env_, nullptr};
  napi_value raw;
  napi_status st = napi_create_external_arraybuffer(
      env, m->base, m->size,
      [](napi_env e, void* data, void* hint) { FinalizeView(Napi::Env(e), data, static_cast<ViewHold*>(hint)); }, v,
      &raw);
  if (st != napi_ok) {
    // Not freed: whether the engine already ran the finalizer on this
    // failure is not specified, and a double free would be worse than a leak.
    v->mapping.reset();
    env.GetAndClearPendingException();
    ThrowState(env, "ERR_TOO_LARGE", "the JavaScript engine refused a view of " + std::to_string(m->size) + " bytes");
    return env.Undefined();
  }
  Napi::ArrayBuffer ab(env, raw);
  napi_create_reference(env, ab, 0, &v->ab);
  m->views.insert(v);
  view_ = v;
  return ab;
}

Napi::Value RegionWrap::Address(const Napi::CallbackInfo& info) {
  if (!Live(info.Env())) return info.Env().Undefined();
  Lock lock(RegistryMutex());
  return FromU64(info.Env(), mapping_->Addr());
}
Napi::Value RegionWrap::Size(const Napi::CallbackInfo& info) {
  if (!Live(info.Env())) return info.Env().Undefined();
  Lock lock(RegistryMutex());
  return FromU64(info.Env(), mapping_->size);
}
Napi::Value RegionWrap::Id(const Napi::CallbackInfo& info) {
  if (!Live(info.Env())) return info.Env().Undefined();
  return FromU64(info.Env(), mapping_->id);
}
Napi::Value RegionWrap::Fd(const Napi::CallbackInfo& info) {
  if (!Live(info.Env())) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), mapping_->ownedFd);
}
Napi::Value RegionWrap::IsClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !mapping_); }

Napi::Value RegionWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  Lock lock(RegistryMutex());
  Mapping* m = mapping_.get();
  o.Set("kind", m->kind);
  o.Set("pageSize", FromU64(env, m->pageSize));
  o.Set("shared", m->shared);
  o.Set("hugetlb", m->hugetlb);
  o.Set("registered", IsRegisteredLocked(m->Addr(), m->Addr() + m->size));
  o.Set("holes", !m->holes.Empty());
  o.Set("handles", Napi::Number::New(env, m->handles));
  o.Set("views", Napi::Number::New(env, static_cast<double>(m->views.size())));
  return o;
}

bool RegionWrap::CheckRange(Napi::Env env, const Napi::Value& off, const Napi::Value& len, uint64_t* o, uint64_t* l) {
  if (!ToU64(env, off, "offset", o) || !ToU64(env, len, "length", l)) return false;
  Mapping* m = mapping_.get();
  if (*o % m->pageSize || *l % m->pageSize || *l == 0) {
    ThrowRange(env, "offset and length must be page-aligned and length positive");
    return false;
  }
  if (*o > m->size || *l > m->size - *o) {
    ThrowRange(env, "range [" + std::to_string(*o) + ", +" + std::to_string(*l) + ") is outside the region of " +
                        std::to_string(m->size) + " bytes");
    return false;
  }
  if (!m->holes.Overlapping(*o, *o + *l).empty()) {
    ThrowState(env, "ERR_UNMAPPED", "range includes unmapped pages");
    return false;
  }
  return true;
}

static int ParseProt(const std::string& s) {
  if (s == "none") return PROT_NONE;
  int p = 0;
  for (char c : s) {
    if (c == 'r')
      p |= PROT_READ;
    else if (c == 'w')
      p |= PROT_WRITE;
    else
      return -1;
  }
  return s.empty() ? -1 : p;
}

// mprotect(offset, length, 'none' | 'r' | 'rw' | 'w')
Napi::Value RegionWrap::Mprotect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  Lock lock(RegistryMutex());
  uint64_t off, len;
  if (!CheckRange(env, info[0], info[1], &off, &len)) return env.Undefined();
  int prot = info[2].IsString() ? ParseProt(info[2].As<Napi::String>().Utf8Value()) : -1;
  if (prot < 0) {
    ThrowType(env, "protection must be 'none', 'r', 'w' or 'rw'");
    return env.Undefined();
  }
  Mapping* m = mapping_.get();
  bool full = prot == (PROT_READ | PROT_WRITE);
  if (!full && m->pins.load() > 0) {
    ThrowState(env, "ERR_BUSY", "region is in use as a page source; stop its engine before mprotect");
    return env.Undefined();
  }
  // A view over memory JS cannot write would crash the process on access.
  if (!full && !DetachViewsLocked(m, env_)) {
    ThrowState(env, "ERR_BUSY", "region has a view in another thread; close it there before mprotect");
    return env.Undefined();
  }
  if (mprotect(m->base + off, len, prot) != 0) {
    ThrowSys(env, "mprotect", errno);
    return env.Undefined();
  }
  if (full) {
    m->restricted.Erase(off, off + len);
  } else {
    m->restricted.Assign(off, off + len, prot);
  }
  return env.Undefined();
}

namespace {

int ParseAdvice(const std::string& s) {
  if (s == "dontneed") return MADV_DONTNEED;
  if (s == "remove") return MADV_REMOVE;
  if (s == "willneed") return MADV_WILLNEED;
  if (s == "normal") return MADV_NORMAL;
  if (s == "random") return MADV_RANDOM;
  if (s == "sequential") return MADV_SEQUENTIAL;
  if (s == "free") return MADV_FREE;
  if (s == "pageout") return MADV_PAGEOUT;
  if (s == "cold") return MADV_COLD;
  if (s == "populate_read") return 22;   // MADV_POPULATE_READ (5.14)
  if (s == "populate_write") return 23;  // MADV_POPULATE_WRITE (5.14)
  return -1;
}

// Memory operations that may raise userfaultfd events (REMOVE, UNMAP, REMAP)
// block until the event is read; they run off the JS thread so that a JS
// reader of those events is never the thread waiting for them.
struct MemOp {
  enum Op { kMadvise, kUnmap, kRemap };
  Op op;
  std::shared_ptr<Mapping> m;
  uint8_t* base = nullptr;
  uint64_t oldSize = 0, off = 0, len = 0;
  int advice = 0, err = 0;
  uint8_t* newBase = nullptr;

  void Execute() {
    switch (op) {
      case kMadvise:
        if (madvise(base + off, len, advice) != 0) err = errno;
        break;
      case kUnmap:
        if (munmap(base + off, len) != 0) err = errno;
        break;
      case kRemap: {
        void* p = mremap(base, oldSize, len, MREMAP_MAYMOVE);
        if (p == MAP_FAILED)
          err = errno;
        else
          newBase = static_cast<uint8_t*>(p);
        break;
      }
    }
  }

  void Done(Napi::Env env, Napi::Promise::Deferred& d, bool canRunJs) {
    {
      Lock lock(RegistryMutex());
      if (op != kMadvise) m->busy = false;
      if (!err) Commit();
    }
    if (!canRunJs) return;  // env teardown: the bookkeeping above is what matters
    if (err) {
      d.Reject(MakeSys(env, op == kMadvise ? "madvise" : op == kUnmap ? "munmap" : "mremap", err).Value());
      return;
    }
    d.Resolve(op == kRemap ? FromU64(env, reinterpret_cast<uint64_t>(newBase)) : env.Undefined());
  }

  // Bring our bookkeeping in line with what the kernel did (lock held).
  void Commit() {
    uint64_t a = reinterpret_cast<uint64_t>(base);
    if (op == kUnmap) {
      m->holes.Assign(off, off + len, 1);
      for (UffdCore* u : AllUffds())
        if (u->ownProcess) u->regs.Erase(a + off, a + off + len);
    } else if (op == kRemap) {
      uint64_t na = reinterpret_cast<uint64_t>(newBase);
      uint64_t keep = std::min<uint64_t>(oldSize, len);
      for (UffdCore* u : AllUffds()) {
        if (!u->ownProcess) continue;
        u->regs.Erase(a + keep, a + oldSize);  // shrunk tail is gone
        // The kernel keeps registrations across mremap only for uffds that
        // asked for REMAP events; others are dropped.
        if (u->features & UFFD_FEATURE_EVENT_REMAP)
          u->regs.Shift(a, a + keep, static_cast<int64_t>(na - a));
        else
          u->regs.Erase(a, a + keep);
      }
      m->base = newBase;
      m->size = len;
      m->restricted.Erase(keep, UINT64_MAX);
    }
  }
};

Napi::Value RunMemOp(Napi::Env env, std::shared_ptr<MemOp> op) {
  return OffThread::Start(
      env, [op] { op->Execute(); },
      [op](Napi::Env e, Napi::Promise::Deferred& d, bool canRunJs) { op->Done(e, d, canRunJs); });
}

}  // namespace

// madvise(offset, length, advice) -> Promise<void>
Napi::Value RegionWrap::Madvise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t off, len;
  int advice = info[2].IsString() ? ParseAdvice(info[2].As<Napi::String>().Utf8Value()) : -1;
  uint8_t* base;
  {
    Lock lock(RegistryMutex());
    if (!CheckRange(env, info[0], info[1], &off, &len)) return env.Undefined();
    if (mapping_->busy) {
      ThrowState(env, "ERR_BUSY", "region is being unmapped or moved");
      return env.Undefined();
    }
    base = mapping_->base;
  }
  if (advice < 0) {
    ThrowType(env,
              "advice must be one of dontneed, remove, willneed, normal, random, sequential, free, "
              "pageout, cold, populate_read, populate_write");
    return env.Undefined();
  }
  auto op = std::make_shared<MemOp>();
  *op = MemOp{MemOp::kMadvise, mapping_, base, 0, off, len, advice};
  return RunMemOp(env, op);
}

// Moving or unmapping memory under a live view or a running page source
// would crash whoever reads it next: refuse unless only this thread's views
// exist (they are detached) and nothing pins the mapping.
static bool PrepareMove(Napi::Env env, RegionWrap* self, Mapping* m) {
  if (m->busy) {
    ThrowState(env, "ERR_BUSY", "region is being unmapped or moved");
    return false;
  }
  if (m->pins.load() > 0) {
    ThrowState(env, "ERR_BUSY", "region is in use as a page source or by a running touch; stop those first");
    return false;
  }
  if (!DetachViewsLocked(m, self->envOf())) {
    ThrowState(env, "ERR_BUSY", "region has a view in another thread; close the region there first");
    return false;
  }
  m->busy = true;
  return true;
}

// unmap(offset, length) -> Promise<void>: punches a hole (UNMAP event).
Napi::Value RegionWrap::Unmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t off, len;
  auto op = std::make_shared<MemOp>();
  {
    Lock lock(RegistryMutex());
    if (!CheckRange(env, info[0], info[1], &off, &len)) return env.Undefined();
    if (!PrepareMove(env, this, mapping_.get())) return env.Undefined();
    *op = MemOp{MemOp::kUnmap, mapping_, mapping_->base, 0, off, len, 0};
  }
  return RunMemOp(env, op);
}

// remap(newSize) -> Promise<address>: mremap with MREMAP_MAYMOVE (REMAP event).
Napi::Value RegionWrap::Remap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Live(env)) return env.Undefined();
  uint64_t size;
  if (!ToU64(env, info[0], "size", &size)) return env.Undefined();
  auto op = std::make_shared<MemOp>();
  {
    Lock lock(RegistryMutex());
    Mapping* m = mapping_.get();
    if (size == 0 || size % m->pageSize) {
      ThrowRange(env, "size must be a positive multiple of the page size");
      return env.Undefined();
    }
    if (!m->holes.Empty()) {
      ThrowState(env, "ERR_UNMAPPED", "a region with unmapped pages cannot be remapped");
      return env.Undefined();
    }
    if (!PrepareMove(env, this, m)) return env.Undefined();
    *op = MemOp{MemOp::kRemap, mapping_, m->base, m->size, 0, size, 0};
  }
  return RunMemOp(env, op);
}

// close(): idempotent. Refused while the region is registered with a
// userfaultfd (unregister it or close the userfaultfd first).
Napi::Value RegionWrap::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!mapping_) return env.Undefined();
  {
    Lock lock(RegistryMutex());
    Mapping* m = mapping_.get();
    if (m->busy) {
      ThrowState(env, "ERR_BUSY", "region is being unmapped or moved; wait for that to finish");
      return env.Undefined();
    }
    // Only the last handle's close unmaps; registration outlives other handles.
    if (m->handles == 1 && IsRegisteredLocked(m->Addr(), m->Addr() + m->size)) {
      ThrowState(env, "ERR_BUSY", "region is still registered with a userfaultfd; unregister it first");
      return env.Undefined();
    }
  }
  DoClose(false);
  return env.Undefined();
}

}  // namespace sos
