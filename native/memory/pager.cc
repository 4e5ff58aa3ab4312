#include "memory/pager.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <random>

#include "uffd/uffd_abi.h"

namespace sos {

static uint64_t Now() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

Pager::Pager(std::shared_ptr<UffdCore> core, std::shared_ptr<Mapping> region, std::shared_ptr<Mapping> staging,
             std::shared_ptr<PageSource> backing, const PagerOptions& o, EmitFn emit)
    : core_(std::move(core)),
      fd_(core_->fd),
      region_(std::move(region)),
      staging_(std::move(staging)),
      backing_(std::move(backing)),
      o_(o),
      emit_(std::move(emit)),
      zap_(o.shared ? MADV_REMOVE : MADV_DONTNEED),
      leap_(o.maxDepth) {
  pages_ = region_.get()->size / kPage;
  faultBase_ = o_.faultBase ? o_.faultBase : Base();
  if (o_.localPages > pages_) o_.localPages = pages_;
  // Two windows are in flight at a time: keep them a small share of the bound.
  o_.maxDepth = static_cast<unsigned>(
      std::max<uint64_t>(1, std::min<uint64_t>(o_.maxDepth ? o_.maxDepth : 1, o_.localPages / 8)));
  // Evict ahead of the faults (on the write-back thread) below this many free frames.
  lowWater_ = std::min<uint64_t>({512, o_.localPages / 4, std::max<uint64_t>(2 * o_.maxDepth + 2, o_.localPages / 16)});
  seed_ = std::random_device{}() * 0x100000001ULL ^ std::random_device{}();
  state_.assign(pages_, kRemote);
  flags_.assign(pages_, 0);
  frameOf_.assign(pages_, kNone);
  slotOf_.assign(pages_, kNone);
  if (o_.asyncDirty) hash_.assign(pages_, 0);
  frames_.assign(o_.localPages, kNone);
  for (uint64_t f = o_.localPages; f-- > 0;) freeFrames_.push_back(static_cast<uint32_t>(f));
  for (uint64_t s = o_.stagingPages; s-- > 0;) freeSlots_.push_back(static_cast<uint32_t>(s));
  // 4 KiB pages only: MOVE splits nothing and every frame is one page.
  madvise(region_.get()->base, region_.get()->size, MADV_NOHUGEPAGE);
  madvise(staging_.get()->base, staging_.get()->size, MADV_NOHUGEPAGE);
  // Copy eviction's slots stay mapped for good (the caller did not register
  // them): a PTE that never changes costs no fault and no flush, where this
  // VM's shadow paging charges a hypervisor exit for the first touch of
  // every new mapping (see docs/memory-paging.md).
  if (PlainStaging()) memset(Slot(0), 0, o_.stagingPages * kPage);
}

Pager::~Pager() { Stop(); }

void Pager::Start() {
  wb_ = std::thread(&Pager::WriteBackLoop, this);
  ra_ = std::thread(&Pager::ReadaheadLoop, this);
  // Named, so top -H and perf tell them apart from the application's threads.
  pthread_setname_np(wb_.native_handle(), "sos-writeback");
  pthread_setname_np(ra_.native_handle(), "sos-readahead");
}

void Pager::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  wbCv_.notify_all();
  frameCv_.notify_all();
  raCv_.notify_all();
  if (wb_.joinable()) wb_.join();
  if (ra_.joinable()) ra_.join();
  // Windows never fetched: their pages are remote again, and a thread
  // waiting on one faults anew (into the engine's teardown).
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& job : raQueue_)
    for (uint32_t q : job.pages) Unfetch(q);
  raQueue_.clear();
  DropHeld();
}

// Fetches and write-backs of the pages are waited out (they finish on their
// own); no fault can come for them, the program having freed them, so once
// idle they are dropped from every mapping and forgotten by the backing, all
// under mu_: a readahead window queued later finds them remote and fetches
// zeros. A write-back of an older copy (queued, or in the batch in flight,
// for a page a fault took back from staging) must not reach the backing
// after the discard: queued ones are dropped, the batch in flight waited out.
int Pager::Discard(uint64_t first, uint64_t count) {
  if (first > pages_ || count > pages_ - first) return -EINVAL;
  if (count == 0) return 0;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (stopping_) return -ECANCELED;
    DropQueuedIn(first, count);
    bool busy = false;
    for (uint64_t q = first; q < first + count && !busy; q++) busy = state_[q] == kFetching || state_[q] == kStaged;
    for (uint32_t p : wbInFlight_) busy = busy || (p >= first && p < first + count);
    if (!busy) break;
    wbCv_.notify_one();
    frameCv_.wait_for(lk, std::chrono::milliseconds(2));  // woken by each install and write-back
  }
  for (uint64_t q = first; q < first + count; q++) {
    if (state_[q] == kResident) {
      uint32_t f = frameOf_[q];
      frames_[f] = kNone;
      frameOf_[q] = kNone;
      freeFrames_.push_back(f);
      used_--;
    } else if (state_[q] == kHeld) {
      held_.erase(static_cast<uint32_t>(q));
      used_--;
    }
    state_[q] = kRemote;
    flags_[q] = 0;
    if (stream_.trig == q) stream_.trig = kNone;
    if (!failing_.empty()) failing_.erase(static_cast<uint32_t>(q));
  }
  // The whole range at once: holes cost nothing, and nothing stays mapped.
  zap_.Add(reinterpret_cast<void*>(Base() + first * kPage), count * kPage);
  int err = zap_.Flush();
  if (err) emit_(o_.shared ? "madvise(MADV_REMOVE)" : "madvise(MADV_DONTNEED)", err, FaultBase() + first * kPage);
  int r = backing_->Discard(first * kPage, count * kPage);
  frameCv_.notify_all();
  return err ? -err : r;
}

// Readahead not yet fetched is dropped; then, round after round, every
// resident page is made a victim (its reference bit cleared), dirty ones
// written back, until nothing is resident, fetched or staged. Running: the
// readahead stays; as many evictions as pages were resident at the start,
// then their write-backs waited for, at most 2 s more (a program that keeps
// evicting may keep the queue from emptying: the stopped flush ends it).
int Pager::Flush(bool running) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!running) {
    for (auto& job : raQueue_)
      for (uint32_t q : job.pages) Unfetch(q);
    raQueue_.clear();
    DropHeld();
  }
  uint64_t errors0 = stats_.storeErrors, evictions0 = stats_.evictions;
  std::optional<uint64_t> pass;  // running: as many evictions as pages were resident at the start
  std::optional<std::chrono::steady_clock::time_point> passed;  // running: when they were made
  for (;;) {
    if (stopping_) return -ECANCELED;
    if (stats_.storeErrors - errors0 >= 10) return -EIO;
    uint64_t resident = 0;
    bool busy = !wbQueue_.empty() || !wbInFlight_.empty();
    // Once the pass is made only its write-backs are waited for: no more scans under the lock the
    // running program's faults take.
    if (!passed)
      for (uint64_t q = 0; q < pages_; q++) {
        if (state_[q] == kResident) {
          resident++;
          flags_[q] &= ~kRef;
        } else if (!running && (state_[q] == kFetching || state_[q] == kStaged || state_[q] == kHeld)) {
          busy = true;
        }
      }
    if (!pass) pass = resident;
    // A running program faults pages in again meanwhile: one pass's worth, not until none is left.
    bool more = resident && (!running || stats_.evictions - evictions0 < *pass);
    if (!more && !busy) return 0;
    if (running && !more) {
      auto now = std::chrono::steady_clock::now();
      if (!passed) passed = now;
      if (now - *passed > std::chrono::seconds(2)) return 0;
    }
    if (more) EvictSome(resident);
    wbCv_.notify_one();
    frameCv_.wait_for(lk, std::chrono::milliseconds(2));  // woken by each write-back
  }
}

uint64_t Pager::Resident() {
  std::lock_guard<std::mutex> lk(mu_);
  return o_.localPages - freeFrames_.size();
}
uint64_t Pager::Used() {
  std::lock_guard<std::mutex> lk(mu_);
  return used_;
}
std::vector<uint8_t> Pager::States() {
  std::lock_guard<std::mutex> lk(mu_);
  return state_;
}

// Install len bytes at dst; *copied says how many went in, also when it then
// fails (the pages before the failure are mapped and must be counted).
long Pager::Copy(uint64_t dst, const void* src, uint64_t len, bool wp, uint64_t* copied) {
  uint64_t done = 0;
  long res = 0;
  while (done < len) {
    struct uffdio_copy c = {};
    c.dst = dst + done;
    c.src = reinterpret_cast<uint64_t>(src) + done;
    c.len = len - done;
    c.mode = wp ? UFFDIO_COPY_MODE_WP : 0;
    long r = ioctl(fd_, UFFDIO_COPY, &c);
    if (c.copy > 0) done += static_cast<uint64_t>(c.copy);
    if (r == 0) {
      done = len;
      break;
    }
    if (errno == EAGAIN) continue;  // mm changing (the copied part is reported): go on
    res = -errno;
    break;
  }
  if (copied) *copied = done;
  return res;
}

void Pager::Wake(uint64_t addr) {
  struct uffdio_range r = {addr & ~(kPage - 1), kPage};
  ioctl(fd_, UFFDIO_WAKE, &r);
}

// Take a frame for page and mark it resident (mu_ held, frame reserved in used_).
void Pager::Place(uint32_t page, uint8_t flags) {
  uint32_t f = freeFrames_.back();
  freeFrames_.pop_back();
  frames_[f] = page;
  frameOf_[page] = f;
  state_[page] = kResident;
  flags_[page] = flags | (flags_[page] & kWasDirty);
}

bool Pager::MarkUsed(uint32_t p) {
  if (state_[p] != kResident) return false;
  if (flags_[p] & kPrefetched) stats_.prefetchHits++;
  flags_[p] = (flags_[p] | kDirty | kRef) & ~kPrefetched;
  return true;
}

// Fold the written bits into the per-page flags: written pages are dirty and
// recently used (async mode, on the write-back thread). The walk runs without
// the lock, so faults never wait behind it; its result may be stale by the
// time it is applied, which is safe: a page reported written is at worst
// written back once more, and a page written but evicted before the result
// lands is caught by its content hash.
void Pager::ScanWritten(std::unique_lock<std::mutex>& lk) {
  stats_.scans++;
  uint64_t base = Base();
  scanned_.clear();
  lk.unlock();
  int r = scanner_.Scan(base, base + pages_ * kPage, [&](uint64_t s, uint64_t e) {
    for (uint64_t a = s; a < e; a += kPage) scanned_.push_back(static_cast<uint32_t>((a - base) / kPage));
  });
  lk.lock();
  if (r < 0) emit_("ioctl(PAGEMAP_SCAN)", -r, base);
  for (uint32_t p : scanned_)
    if (MarkUsed(p)) stats_.writtenSeen++;
}

// Free slots after their write-back. Move eviction's are zapped, many with
// one TLB flush (each madvise would flush on its own); plain ones just return.
// Forget the queued write-backs of pages in [first, first + count) that are
// no longer staged in that slot (mu_ held): their slots go free.
void Pager::DropQueuedIn(uint64_t first, uint64_t count) {
  std::vector<uint32_t> slots;
  for (auto it = wbQueue_.begin(); it != wbQueue_.end();) {
    bool stale = it->page >= first && it->page < first + count &&
                 !(state_[it->page] == kStaged && slotOf_[it->page] == it->slot);
    if (!stale) {
      ++it;
      continue;
    }
    slots.push_back(it->slot);
    used_--;
    it = wbQueue_.erase(it);
  }
  ReleaseAll(slots);
}

void Pager::ReleaseAll(std::vector<uint32_t>& slots) {
  freeSlots_.insert(freeSlots_.end(), slots.begin(), slots.end());
  if (PlainStaging() || slots.empty()) return;
  std::sort(slots.begin(), slots.end());
  for (uint32_t s : slots) zap_.Add(Slot(s), kPage);
  stats_.evictFlushes++;
  zap_.Flush();
}

// Bookkeeping once page p is out of the region (mu_ held): its frame is
// free; dirty, it waits in `slot` for write-back, clean it is remote again.
void Pager::Evicted(uint32_t p, uint32_t slot, bool dirty) {
  sinceScan_++;
  uint32_t f = frameOf_[p];
  frames_[f] = kNone;
  frameOf_[p] = kNone;
  freeFrames_.push_back(f);
  stats_.evictions++;
  if (flags_[p] & kPrefetched) stats_.prefetchWaste++;
  flags_[p] = dirty ? kWasDirty : 0;
  if (!dirty) {
    state_[p] = kRemote;
    used_--;
    stats_.cleanDrops++;
    return;
  }
  state_[p] = kStaged;
  slotOf_[p] = slot;
  wbQueue_.push_back({p, slot});
  wbCv_.notify_one();
}

// Move eviction of the victims (mu_ held): UFFDIO_MOVE takes their PTEs into
// staging slots, so a later access faults MISSING. Adjacent victims go in one
// ioctl into adjacent slots (the kernel batches the TLB flush of a run: one
// per page costs an IPI to the CPU running the application). Clean pages are
// dropped there, dirty ones queued for write-back.
uint64_t Pager::EvictMove(std::vector<uint32_t>& v) {
  std::sort(v.begin(), v.end());
  // Lowest slot numbers at the back: popping gives ascending, adjacent ones.
  std::sort(freeSlots_.begin(), freeSlots_.end(), std::greater<uint32_t>());
  uint64_t done = 0;
  for (size_t i = 0; i < v.size();) {
    size_t j = i + 1;
    while (j < v.size() && v[j] == v[j - 1] + 1) j++;
    size_t k = i;
    while (k < j && !freeSlots_.empty()) {
      uint32_t slot = freeSlots_.back();
      size_t n = 1;
      freeSlots_.pop_back();
      while (k + n < j && !freeSlots_.empty() && freeSlots_.back() == slot + n) {
        freeSlots_.pop_back();
        n++;
      }
      done += EvictMoveRun(v[k], slot, static_cast<uint32_t>(n));
      k += n;
    }
    for (; k < j; k++) flags_[v[k]] &= ~kVictim;
    i = j;
  }
  ReleaseAll(cleanSlots_);
  cleanSlots_.clear();
  return done;
}

// Move `count` pages from `first` into the slots from `slot` (taken); those
// not moved give their slots back and stay resident for another round.
uint64_t Pager::EvictMoveRun(uint32_t first, uint32_t slot, uint32_t count) {
  struct sos_uffdio_move mv = {};
  mv.dst = reinterpret_cast<uint64_t>(Slot(slot));
  mv.src = Base() + static_cast<uint64_t>(first) * kPage;
  mv.len = uint64_t{count} * kPage;
  mv.mode = SOS_UFFDIO_MOVE_MODE_DONTWAKE;
  stats_.evictFlushes++;
  int err = ioctl(fd_, SOS_UFFDIO_MOVE, &mv) == 0 ? 0 : errno;
  uint32_t moved = mv.move > 0 ? static_cast<uint32_t>(static_cast<uint64_t>(mv.move) / kPage) : 0;
  if (moved > count) moved = count;
  for (uint32_t k = 0; k < moved; k++) {
    uint32_t p = first + k, s = slot + k;
    bool dirty = flags_[p] & kDirty;
    // A write between the scan that found the page clean and the move is in
    // the moved page but nowhere in the bits: the content hash taken at
    // install shows it.
    if (!dirty && (flags_[p] & kHashed) && PageHash(Slot(s), seed_) != hash_[p]) {
      dirty = true;
      stats_.raceCatches++;
    }
    if (!dirty) cleanSlots_.push_back(s);  // freed together: one madvise per run
    Evicted(p, dirty ? s : kNone, dirty);
  }
  if (moved < count) {
    // Not now (the page is busy, or gone under us): try others.
    for (uint32_t k = moved; k < count; k++) {
      flags_[first + k] = (flags_[first + k] & ~kVictim) | kRef;
      freeSlots_.push_back(slot + k);
    }
    if (!err) err = EAGAIN;
    // A free slot holds nothing, but one mapped again (read after its zap)
    // refuses the move: zap it and go on.
    if (err == EEXIST) {
      madvise(Slot(slot + moved), kPage, MADV_DONTNEED);
      err = EAGAIN;
    }
    if (err != EAGAIN && err != EBUSY) emit_("ioctl(UFFDIO_MOVE)", err, mv.src + uint64_t{moved} * kPage);
  }
  return moved;
}

// Copy eviction of the victims (mu_ held), one run of adjacent pages at a
// time, all zapped together at the end. The copy must not fault (this may be
// the thread that serves the region), so pages the kernel does not map now
// (swapped out, or zapped by misuse) are skipped: mincore says which.
uint64_t Pager::EvictCopy(std::vector<uint32_t>& v) {
  std::sort(v.begin(), v.end());
  copied_.clear();
  runSlots_.clear();
  for (size_t i = 0; i < v.size();) {
    size_t j = i + 1;
    while (j < v.size() && SpanSafe(v[j - 1] + 1, v[j])) j++;
    EvictCopySpan(&v[i], j - i);
    i = j;
  }
  if (copied_.empty()) return 0;
  // One flush for every run. Should it fail, what is still mapped stays.
  for (const Copied& c : copied_)
    zap_.Add(reinterpret_cast<void*>(Base() + uint64_t{c.first} * kPage), c.count * kPage);
  stats_.evictFlushes++;
  int err = zap_.Flush();
  if (err) emit_("madvise(MADV_DONTNEED)", err, Base() + uint64_t{copied_[0].first} * kPage);
  uint64_t done = 0;
  size_t taken = 0;
  for (const Copied& c : copied_) {
    if (err) {
      incore_.assign(c.count, 0);
      mincore(reinterpret_cast<void*>(Base() + uint64_t{c.first} * kPage), c.count * kPage, incore_.data());
    }
    for (uint32_t k = 0; k < c.count; k++) {
      uint32_t p = c.first + k;
      bool dirty = flags_[p] & kDirty;
      uint32_t slot = dirty ? runSlots_[taken++] : kNone;
      if (err && (incore_[k] & 1)) {  // not zapped: still resident, as before
        flags_[p] = (flags_[p] & ~kVictim) | kRef;
        if (dirty) freeSlots_.push_back(slot);  // a plain slot: nothing to drop
        continue;
      }
      Evicted(p, slot, dirty);
      done++;
    }
  }
  return done;
}

// Whether one write-protect may span the pages [a, b) between two victims:
// none is mapped writable (remote pages have no PTE, clean resident ones are
// protected already), so the ioctl changes nothing but the victims. Bounded:
// the kernel walks the whole span.
bool Pager::SpanSafe(uint32_t a, uint32_t b) const {
  if (b - a > kSpanGap) return false;
  for (uint32_t q = a; q < b; q++) {
    if (state_[q] == kRemote) continue;
    if (state_[q] == kResident && !(flags_[q] & kDirty)) continue;
    return false;
  }
  return true;
}

// Write-protect and copy out the victims v[0..n) (sorted, SpanSafe between
// neighbours) with one ioctl and so one TLB flush, not one per run: that
// flush is an IPI to the application's CPU, and the dirty victims of a
// scan lie apart. EvictCopy zaps them. No write is lost: each page is
// protected before it is copied (clean ones since their install with
// COPY_MODE_WP, dirty ones here; the ioctl returns after the TLB flush), so
// a later write traps as a WP fault, and OnWriteFault needs mu_, held until
// the zap; it then finds the page not resident and wakes the writer, whose
// retry faults MISSING and is served from the staged copy (clean: the
// source). With WP_ASYNC the kernel would let that write through: sync mode
// only. The dirty pages' slots are appended to runSlots_, in page order.
// Victims not mapped (swapped out, or zapped by misuse: mincore says which)
// stay for another round.
void Pager::EvictCopySpan(const uint32_t* v, size_t n) {
  uint32_t first = v[0], span = v[n - 1] - v[0] + 1;
  uint64_t addr = Base() + static_cast<uint64_t>(first) * kPage, len = static_cast<uint64_t>(span) * kPage;
  auto keep = [&](uint32_t p) { flags_[p] = (flags_[p] & ~kVictim) | kRef; };
  incore_.assign(span, 0);
  if (mincore(reinterpret_cast<void*>(addr), len, incore_.data()) != 0) incore_.assign(span, 0);
  bool anyDirty = false;
  for (size_t k = 0; k < n; k++) anyDirty |= (incore_[v[k] - first] & 1) && (flags_[v[k]] & kDirty);
  if (anyDirty) {
    struct uffdio_writeprotect w = {};
    w.range = {FaultBase() + static_cast<uint64_t>(first) * kPage, len};
    w.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    stats_.evictFlushes++;
    if (ioctl(fd_, UFFDIO_WRITEPROTECT, &w) != 0) {  // not now: the victims stay resident
      int err = errno;
      for (size_t k = 0; k < n; k++) keep(v[k]);
      if (err != EAGAIN) emit_("ioctl(UFFDIO_WRITEPROTECT)", err, addr);
      return;
    }
  }
  for (size_t k = 0; k < n; k++) {
    uint32_t p = v[k];
    if (!(incore_[p - first] & 1)) {
      keep(p);
      continue;
    }
    if (flags_[p] & kDirty) {
      uint32_t slot = freeSlots_.back();  // EvictSome counted one per dirty victim
      memcpy(Slot(slot), reinterpret_cast<void*>(Base() + static_cast<uint64_t>(p) * kPage), kPage);
      freeSlots_.pop_back();
      runSlots_.push_back(slot);
    }
    if (!copied_.empty() && copied_.back().first + copied_.back().count == p)
      copied_.back().count++;
    else
      copied_.push_back({p, 1});
  }
}

// CLOCK, its hand going round the region's pages in address order (not
// round the frames): a set reference bit buys a page another round. Both
// modes collect the victims first; victims near in address share their
// ioctl (move: adjacent ones; copy: one write-protect spans them) and copy
// eviction zaps them all with one flush.
uint64_t Pager::EvictSome(uint64_t want) {
  uint64_t target = std::max<uint64_t>(want, 64);
  uint64_t n = pages_;
  bool copy = o_.eviction == Eviction::kCopy;
  uint64_t slots = freeSlots_.size();  // move: one per victim; copy: one per dirty victim
  victims_.clear();
  for (uint64_t steps = 0; victims_.size() < target && steps < 2 * n + 1; steps++) {
    if (!copy && victims_.size() >= slots) break;  // move: every victim needs a slot
    uint32_t p = hand_;
    hand_ = static_cast<uint32_t>((hand_ + 1) % n);
    if (state_[p] != kResident || (flags_[p] & kVictim)) continue;
    if (flags_[p] & kRef) {
      flags_[p] &= ~kRef;
      continue;
    }
    if (copy && (flags_[p] & kDirty)) {
      if (slots == 0) continue;
      slots--;
    }
    flags_[p] |= kVictim;
    victims_.push_back(p);
  }
  if (victims_.empty()) return 0;
  uint64_t done = copy ? EvictCopy(victims_) : EvictMove(victims_);
  // Clean drops free frames at once: a fault waiting in Reserve may go on
  // (it may be waiting on this very eviction, run ahead by another thread).
  if (done) frameCv_.notify_all();
  return done;
}

// Reserve frames (mu_ held): want if possible, at least must; waits for
// write-backs only when not even must is free.
bool Pager::Reserve(std::unique_lock<std::mutex>& lk, uint64_t want, uint64_t must, uint64_t* got) {
  bool evicted = false;
  for (;;) {
    if (stopping_) return false;
    uint64_t avail = o_.localPages - used_;
    if (avail >= want || (evicted && avail >= must)) {
      *got = std::min(want, avail);
      used_ += *got;
      if (o_.localPages - used_ < lowWater_ && o_.localPages < pages_) wbCv_.notify_one();
      return true;
    }
    if (!evicted) {
      EvictSome(want - avail);
      evicted = true;
      continue;
    }
    stats_.frameWaits++;
    wbCv_.notify_one();
    // Woken by a write-back, an install or an eviction elsewhere; the bound
    // covers victims the kernel refused for now (UFFDIO_MOVE's EAGAIN/EBUSY)
    // with nothing in flight to wake us: then evict again.
    frameCv_.wait_for(lk, std::chrono::milliseconds(2));
    evicted = false;
  }
}

int Pager::ResolveFault(uint64_t addr, uint8_t* buf, size_t, bool write) { return Resolve(addr, buf, write); }

// A store that faults (sync tracking) gets its page writable and dirty at
// once: protecting it would only cost a write-protect fault right after.
// A wrong guess (below, for pages dirty before) costs a write-back, never a write.
int Pager::Resolve(uint64_t addr, uint8_t* buf, bool write) {
  bool dirtyNow = write && !o_.asyncDirty;
  uint64_t t0 = Now();
  uint64_t base = FaultBase();
  if (addr < base || addr >= base + pages_ * kPage) return -ENOSYS;
  uint32_t p = static_cast<uint32_t>((addr - base) / kPage);
  uint64_t pageAddr = base + static_cast<uint64_t>(p) * kPage;
  std::unique_lock<std::mutex> lk(mu_);
  if (stopping_) return 0;
  // A page whose fetch failed (no poison): its thread waits, unwoken, and the
  // engine hands the fault back until the next try is due.
  bool retrying = false;
  if (state_[p] == kRemote && !failing_.empty()) {
    auto it = failing_.find(p);
    retrying = it != failing_.end();
    if (retrying && Now() < it->second.next) return -EAGAIN;
  }
  if (retrying) {
    stats_.fetchRetries++;
  } else {
    stats_.faults++;
  }
  switch (state_[p]) {
    case kResident:
    case kPoisoned:
      Wake(pageAddr);  // resolved meanwhile by another thread
      return 0;
    case kFetching:
      // Its fetch is in flight, and the UFFDIO_COPY that installs it wakes
      // this thread too (a failed one wakes it to fault again).
      if ((flags_[p] & kTrigger) && stream_.trig == p) OnTrigger(p, dirtyNow);
      return 0;
    case kHeld: return ServeHeld(p, t0, dirtyNow);
    case kStaged: {
      // Its write-back may be in flight: serve the staged copy, still dirty.
      uint64_t got;
      if (!Reserve(lk, 1, 1, &got)) return 0;
      if (state_[p] != kStaged) {  // changed while we waited
        used_--;
        return -EAGAIN;
      }
      long r = Copy(pageAddr, Slot(slotOf_[p]), kPage, o_.asyncDirty);
      if (r < 0) {
        used_--;
        emit_("ioctl(UFFDIO_COPY)", static_cast<int>(-r), pageAddr);
        return r == -EAGAIN ? -EAGAIN : 0;
      }
      Place(p, kDirty | kRef);
      stats_.stagedHits++;
      stats_.faultLatency.Record(Now() - t0);
      return 0;
    }
    default: break;
  }

  // Remote: this page now; a stream the prefetcher finds gets windows read
  // ahead of it by the readahead thread.
  uint64_t got;
  if (!Reserve(lk, 1, 1, &got)) return 0;
  if (state_[p] != kRemote) {  // resolved by another thread while we waited
    used_--;
    return -EAGAIN;
  }
  state_[p] = kFetching;
  // A page that was dirty when last evicted is likely written again (random
  // read-modify-writes): install it writable too. The stream, if any, follows
  // the access itself.
  bool installDirty = dirtyNow || (!o_.asyncDirty && (flags_[p] & kWasDirty));
  if (o_.prefetch && !retrying) {
    LeapPrefetcher::Plan pl = leap_.OnFault(p);
    if (pl.stride) {
      StartStream(p, pl.stride, pl.depth, dirtyNow);
    } else if (stream_.on) {
      stream_.on = false;
      DropHeld();
    }
  }
  uint32_t batch[1] = {p};
  size_t n = 1;
  PageSource::Io ios[1];
  size_t nio = Runs(batch, n, buf, ios);
  lk.unlock();

  FetchRuns(ios, nio);
  // The faulting page must arrive: retry a few times, backing off (a page
  // already failing has its own schedule, below).
  PageSource::Io& io = ios[0];
  int delays[] = {1, 10, 100};
  for (int t = 0; t < 3 && !retrying && io.result < 0; t++) {
    stats_.fetchErrors++;
    std::this_thread::sleep_for(std::chrono::milliseconds(delays[t]));
    io.result = backing_->Fetch(io.off, io.buf, io.len);
  }
  if (o_.asyncDirty && io.result == 0) hash_[p] = PageHash(buf, seed_);

  lk.lock();
  long r = io.result;
  if (r == 0) r = Copy(pageAddr, buf, kPage, !installDirty);  // WP: the first write shows
  if (r == 0) {
    Place(p, kRef | (installDirty ? kDirty : 0) | (o_.asyncDirty ? kHashed : 0));
    stats_.pagesFetched++;
    if (!NeverStored(p)) stats_.bytesIn += kPage;
    if (!failing_.empty()) failing_.erase(p);
    frameCv_.notify_all();
    stats_.faultLatency.Record(Now() - t0);
    return 0;
  }
  if (io.result < 0) stats_.fetchErrors++;
  used_--;
  state_[p] = kRemote;
  frameCv_.notify_all();
  const char* call = io.result < 0 ? "source.fetch" : "ioctl(UFFDIO_COPY)";
  if (!o_.poison) {
    // A far page never reads as zeros, and without UFFDIO_POISON there is
    // no error to hand the access: leave its thread waiting (no wake) and
    // fetch again later, backing off up to 1 s, until the source answers or
    // the region stops; report each failure.
    Backoff& b = failing_[p];
    b.failures = std::min(b.failures + 1, 10u);
    b.next = Now() + (uint64_t{1} << b.failures) * 1000000;
    emit_(call, static_cast<int>(-r), pageAddr);
    return -EAGAIN;  // the engine keeps the fault and hands it back
  }
  // A far page never reads as zeros: poison it (the access gets SIGBUS) and
  // report, rather than hand out wrong data.
  state_[p] = kPoisoned;
  stats_.poisoned++;
  struct sos_uffdio_poison po = {};
  po.range = {pageAddr, kPage};
  if (ioctl(fd_, SOS_UFFDIO_POISON, &po) != 0) Wake(pageAddr);
  emit_(call, static_cast<int>(-r), pageAddr);
  return 0;
}

// The helpers below run with mu_ held unless they say otherwise.

// Runs of adjacent pages (sorted) to fetch into buf, page i at buf + i pages.
// Pages the source was never given form their own runs, marked
// result 1: zeros, no fetch. A trigger page is a run of its own (it is held,
// not installed).
size_t Pager::Runs(const uint32_t* pages, size_t n, uint8_t* buf, PageSource::Io* ios) {
  size_t nio = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t q = pages[i];
    bool z = NeverStored(q), t = flags_[q] & kTrigger;
    if (nio && !t && q == pages[i - 1] + 1 && (ios[nio - 1].result == 1) == z && !(flags_[pages[i - 1]] & kTrigger)) {
      ios[nio - 1].len += kPage;
    } else {
      ios[nio++] = {uint64_t{q} * kPage, buf + i * kPage, kPage, z ? 1 : 0};
    }
  }
  return nio;
}

// Fetch the runs (mu_ not held); zero runs are filled here. 0 or the first error.
int Pager::FetchRuns(PageSource::Io* ios, size_t nio) {
  PageSource::Io fetch[256];
  size_t idx[256], m = 0;
  for (size_t i = 0; i < nio; i++) {
    if (ios[i].result == 1) {
      memset(ios[i].buf, 0, ios[i].len);
      ios[i].result = 0;
      stats_.zeroFills += ios[i].len / kPage;
    } else {
      idx[m] = i;
      fetch[m++] = ios[i];
    }
  }
  if (!m) return 0;
  stats_.fetches++;
  int r = backing_->FetchV(fetch, m);
  for (size_t j = 0; j < m; j++) ios[idx[j]].result = fetch[j].result;
  return r;
}

// A stream found at page p: its first window starts right after p.
void Pager::StartStream(uint32_t p, int64_t stride, unsigned depth, bool write) {
  DropHeld();
  stream_ = Stream{};
  stream_.on = true;
  stream_.write = write;
  stream_.stride = stride;
  stream_.depth = std::max(4u, std::min(depth, o_.maxDepth));
  stream_.curStart = p;
  stream_.curCount = 0;
  IssueWindow(static_cast<int64_t>(p) + stride, stride, stream_.depth);
}

// The stream reached the window ahead: the one it leaves was used (its
// prefetched pages are hits), and the next goes out, twice as deep up to the
// maximum (Leap's growth on a consumed window).
void Pager::OnTrigger(uint32_t page, bool write) {
  flags_[page] &= ~kTrigger;
  if (!stream_.on || stream_.trig != page) return;
  stats_.triggers++;
  Stream& s = stream_;
  s.write = write;
  for (unsigned i = 0; i < s.curCount; i++) {
    int64_t q = s.curStart + static_cast<int64_t>(i) * s.stride;
    if (q < 0 || q >= static_cast<int64_t>(pages_)) break;
    if (state_[q] == kResident && (flags_[q] & kPrefetched)) {
      flags_[q] &= ~kPrefetched;
      stats_.prefetchHits++;
    }
  }
  s.curStart = s.aheadStart;
  s.curCount = s.aheadCount;
  s.depth = std::min(s.depth * 2, o_.maxDepth);
  IssueWindow(s.next, s.stride, s.depth);
}

// Queue a window for the readahead thread: its remote pages get frames
// (those free after one eviction pass: readahead never waits) and the first
// becomes the trigger.
void Pager::IssueWindow(int64_t start, int64_t stride, unsigned count) {
  Stream& s = stream_;
  s.aheadStart = start;
  s.aheadCount = count;
  s.next = start + static_cast<int64_t>(count) * stride;
  s.trig = kNone;
  std::vector<uint32_t> job;
  for (unsigned i = 0; i < count; i++) {
    int64_t q = start + static_cast<int64_t>(i) * stride;
    if (q < 0 || q >= static_cast<int64_t>(pages_)) break;
    if (state_[q] == kRemote && (failing_.empty() || !failing_.count(static_cast<uint32_t>(q))))
      job.push_back(static_cast<uint32_t>(q));
  }
  if (job.empty()) return;
  uint64_t got = 0;
  std::unique_lock<std::mutex> lk(mu_, std::adopt_lock);
  Reserve(lk, job.size(), 0, &got);
  lk.release();
  job.resize(got);
  if (job.empty()) return;
  for (uint32_t q : job) state_[q] = kFetching;
  s.trig = job.front();
  flags_[s.trig] |= kTrigger;
  raQueue_.push_back({std::move(job), s.write});
  raCv_.notify_one();
}

// A readahead page that will not arrive: remote again, its frame free, and a
// thread waiting on it woken to fault anew.
void Pager::Unfetch(uint32_t q) {
  state_[q] = kRemote;
  flags_[q] &= kWasDirty;
  used_--;
  Wake(FaultBase() + uint64_t{q} * kPage);
}

// Forget the held pages (clean copies of remote ones): the stream ended.
void Pager::DropHeld() {
  for (auto& h : held_)
    if (state_[h.first] == kHeld) {
      state_[h.first] = kRemote;
      used_--;
    }
  held_.clear();
  if (stream_.trig != kNone && stream_.trig < pages_) flags_[stream_.trig] &= ~kTrigger;
  stream_.trig = kNone;
}

// A fault on a held page: install it from memory, and send the next window.
int Pager::ServeHeld(uint32_t p, uint64_t t0, bool dirtyNow) {
  auto it = held_.find(p);
  uint64_t pageAddr = FaultBase() + uint64_t{p} * kPage;
  long r = it == held_.end() ? -ENOENT : Copy(pageAddr, it->second.data(), kPage, !dirtyNow);
  if (r == -EAGAIN) return -EAGAIN;
  if (it != held_.end()) held_.erase(it);
  if (r < 0) {  // fetch it the usual way
    state_[p] = kRemote;
    used_--;
    if (r != -ENOENT) emit_("ioctl(UFFDIO_COPY)", static_cast<int>(-r), pageAddr);
    return -EAGAIN;
  }
  Place(p, kRef | (dirtyNow ? kDirty : 0) | (o_.asyncDirty ? kHashed : 0));
  stats_.prefetchHits++;
  stats_.faultLatency.Record(Now() - t0);
  if (stream_.trig == p) OnTrigger(p, dirtyNow);
  return 0;
}

// The readahead thread: fetch each queued window (zeros for pages never
// stored), install its pages but the trigger, which it holds.
void Pager::ReadaheadLoop() {
  std::vector<uint8_t> buf(uint64_t{o_.maxDepth} * kPage);
  std::vector<PageSource::Io> ios(o_.maxDepth);
  uint64_t base = FaultBase();
  std::unique_lock<std::mutex> lk(mu_);
  while (!stopping_) {
    if (raQueue_.empty()) {
      raCv_.wait(lk);
      continue;
    }
    Window win = std::move(raQueue_.front());
    raQueue_.pop_front();
    std::vector<uint32_t>& job = win.pages;
    std::sort(job.begin(), job.end());
    size_t nio = Runs(job.data(), job.size(), buf.data(), ios.data());
    lk.unlock();
    stats_.readaheads++;
    FetchRuns(ios.data(), nio);
    if (o_.asyncDirty)
      for (size_t i = 0; i < nio; i++)
        if (ios[i].result == 0)
          for (uint64_t o = 0; o < ios[i].len; o += kPage)
            hash_[(ios[i].off + o) / kPage] = PageHash(static_cast<uint8_t*>(ios[i].buf) + o, seed_);
    lk.lock();
    for (size_t i = 0; i < nio; i++) {
      PageSource::Io& io = ios[i];
      uint32_t first = static_cast<uint32_t>(io.off / kPage), count = static_cast<uint32_t>(io.len / kPage);
      long r = io.result;
      if (r == 0 && count == 1 && (flags_[first] & kTrigger) && stream_.trig == first) {
        const uint8_t* b = static_cast<const uint8_t*>(io.buf);
        held_[first].assign(b, b + kPage);
        state_[first] = kHeld;
        stats_.pagesFetched++;
        if (!NeverStored(first)) stats_.bytesIn += kPage;
        stats_.prefetched++;
        continue;
      }
      // A stream of stores (sync tracking) gets its pages writable and dirty:
      // protected, each would take a write-protect fault when the stream gets
      // there. Wrong, the guess costs a write-back each, never a lost write.
      uint64_t copied = 0;
      if (r == 0) r = Copy(base + io.off, io.buf, io.len, !win.write, &copied);
      for (uint32_t k = 0; k < count; k++) {
        uint32_t q = first + k;
        // A run that failed part way has its first pages mapped: they are resident all the same.
        if (r == 0 || uint64_t{k} * kPage < copied) {
          Place(q, kRef | kPrefetched | (win.write ? kDirty : 0) | (o_.asyncDirty ? kHashed : 0));
          stats_.pagesFetched++;
          if (!NeverStored(q)) stats_.bytesIn += kPage;
          stats_.prefetched++;
        } else {
          Unfetch(q);  // a window is a guess: the fault fetches it itself
        }
      }
      // ESRCH: the process the mapping belongs to has exited (a foreign fault address) - no error.
      if (r < 0 && r != -ESRCH) stats_.fetchErrors++;
    }
    frameCv_.notify_all();
  }
}

// A synchronous write-protect fault: mark the page dirty and unprotect it
// under the lock, so no eviction can slip between the two (race-free).
bool Pager::OnWriteFault(uint64_t addr) {
  uint64_t base = FaultBase();
  if (addr < base || addr >= base + pages_ * kPage) return false;
  uint32_t p = static_cast<uint32_t>((addr - base) / kPage);
  std::lock_guard<std::mutex> lk(mu_);
  stats_.wpFaults++;
  uint64_t pageAddr = base + static_cast<uint64_t>(p) * kPage;
  if (state_[p] != kResident) {
    Wake(pageAddr);  // evicted meanwhile: the write faults MISSING next
    return true;
  }
  MarkUsed(p);
  struct uffdio_writeprotect w = {};
  w.range = {pageAddr, kPage};
  w.mode = 0;  // unprotect and wake
  if (ioctl(fd_, UFFDIO_WRITEPROTECT, &w) != 0 && errno != ENOENT) {
    int err = errno;
    if (err == EAGAIN) return false;  // let the engine retry the whole fault
    emit_("ioctl(UFFDIO_WRITEPROTECT)", err, pageAddr);
    Wake(pageAddr);
  }
  return true;
}

// Write dirty pages back in StoreV batches, off the fault path, and evict
// ahead of the faults when free frames run low. One batch is in flight at a
// time, so its size sets the write-back rate: pages per round trip.
static constexpr size_t kWriteBackBatch = 256;
void Pager::WriteBackLoop() {
  std::unique_lock<std::mutex> lk(mu_);
  std::vector<Staged> batch;
  std::vector<PageSource::Io> ios;
  std::vector<uint32_t> slots;
  int failures = 0;
  while (!stopping_) {
    // A scan walks every resident PTE: one per quarter turn of the clock,
    // when no write-back waits (a fault may be waiting for it), else at the
    // latest after a full turn.
    uint64_t turn = std::max<uint64_t>(64, o_.localPages / 4);
    if (o_.asyncDirty && sinceScan_ >= (wbQueue_.empty() ? turn : 4 * turn)) {
      sinceScan_ = 0;
      ScanWritten(lk);
      continue;
    }
    if (wbQueue_.empty() && o_.localPages < pages_ && o_.localPages - used_ < lowWater_)
      EvictSome(lowWater_ - (o_.localPages - used_));
    if (wbQueue_.empty()) {
      wbCv_.wait(lk);
      continue;
    }
    batch.clear();
    ios.clear();
    wbInFlight_.clear();
    while (!wbQueue_.empty() && batch.size() < kWriteBackBatch) {
      Staged s = wbQueue_.front();
      wbQueue_.pop_front();
      batch.push_back(s);
      wbInFlight_.push_back(s.page);
      ios.push_back({static_cast<uint64_t>(s.page) * kPage, Slot(s.slot), kPage, 0});
    }
    lk.unlock();
    uint64_t t0 = Now();
    int r = backing_->StoreV(ios.data(), ios.size());
    stats_.writeBackLatency.Record(Now() - t0);
    stats_.writeBackBatches++;
    lk.lock();
    // Completed in order; a failed page goes back to the front, with later ones.
    size_t i = 0;
    slots.clear();
    for (; i < batch.size() && ios[i].result == 0; i++) {
      Staged s = batch[i];
      slots.push_back(s.slot);
      used_--;
      if (state_[s.page] == kStaged && slotOf_[s.page] == s.slot) {
        state_[s.page] = kRemote;
        slotOf_[s.page] = kNone;
      }
      stats_.writeBacks++;
      stats_.bytesOut += kPage;
    }
    ReleaseAll(slots);
    for (size_t j = batch.size(); j-- > i;) wbQueue_.push_front(batch[j]);
    wbInFlight_.clear();
    frameCv_.notify_all();
    if (r < 0 && i < batch.size()) {
      stats_.storeErrors++;
      int err = -ios[i].result;
      emit_("source.store", err, FaultBase() + static_cast<uint64_t>(batch[i].page) * kPage);
      // The page stays staged (a fault still reads it): retry, backing off.
      failures = std::min(failures + 1, 10);
      wbCv_.wait_for(lk, std::chrono::milliseconds(1 << failures));
    } else {
      failures = 0;
    }
  }
}

}  // namespace sos
