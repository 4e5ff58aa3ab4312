// The paging engine of a far-memory region: its pages live in a backing
// PageSource and at most localPages of them are resident. The fault engine
// hands it every missing and write-protect fault of the region (the
// ResolveFault/OnWriteFault hooks); eviction (CLOCK), dirty tracking,
// prefetching and write-back all happen here, in C++.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "memory/dirty_scan.h"
#include "memory/prefetch.h"
#include "memory/zap.h"
#include "uffd/engine.h"
#include "uffd/mapping.h"
#include "uffd/page_source.h"
#include "uffd/uffd_core.h"

namespace sos {

struct PagerStats {
  std::atomic<uint64_t> faults{0}, wpFaults{0}, fetches{0}, pagesFetched{0}, evictions{0}, cleanDrops{0}, writeBacks{0},
      writeBackBatches{0}, prefetched{0}, prefetchHits{0}, prefetchWaste{0}, bytesIn{0}, bytesOut{0}, stagedHits{0},
      raceCatches{0}, fetchErrors{0}, storeErrors{0}, poisoned{0}, fetchRetries{0}, frameWaits{0}, scans{0},
      writtenSeen{0}, zeroFills{0}, readaheads{0}, triggers{0}, evictFlushes{0};
  Histogram faultLatency;      // missing fault handed to the pager -> its page installed
  Histogram writeBackLatency;  // one StoreV batch
};

// How a victim leaves the region: UFFDIO_MOVE of its PTE into a staging slot
// (6.8+; the staging area is registered and its free slots unmapped), or
// write-protect, memcpy into the slot and MADV_DONTNEED (any kernel with
// anonymous WP; needs synchronous dirty tracking, see EvictCopy; the staging
// area is plain memory the caller did not register).
enum class Eviction : uint8_t { kMove, kCopy };

struct PagerOptions {
  uint64_t localPages = 0;
  bool asyncDirty = true;  // WP_ASYNC + PAGEMAP_SCAN, else synchronous WP faults
  Eviction eviction = Eviction::kMove;
  // A faulting page the source cannot deliver: UFFDIO_POISON it (6.6+), or
  // keep the fault waiting and retry the fetch, backing off, until it works.
  bool poison = true;
  bool prefetch = true;
  unsigned maxDepth = 31;  // pages per readahead window at most
  uint64_t stagingPages = 0;
  // Where the region's faults happen, when not at its own address: another
  // process's mapping of the same shared memory (an unmodified program's
  // arena, lib/memory/run). uffd ioctls use this address, loads, mincore and
  // drops the region's own; 0: the region's own.
  uint64_t faultBase = 0;
  // The region is a shared (memfd) mapping: pages leave it with MADV_REMOVE,
  // which frees them from every mapping; copy eviction only.
  bool shared = false;
};

class Pager : public PageSource {
 public:
  // Page states. Staged: moved into the staging area, write-back queued or in
  // flight. Held: a readahead window's first page, fetched but kept out of the
  // region so the stream's access to it faults and asks for the next window.
  enum : uint8_t { kRemote = 0, kFetching = 1, kResident = 2, kStaged = 3, kPoisoned = 4, kHeld = 5 };
  using EmitFn = std::function<void(const char* call, int err, uint64_t addr)>;

  Pager(std::shared_ptr<UffdCore> core, std::shared_ptr<Mapping> region, std::shared_ptr<Mapping> staging,
        std::shared_ptr<PageSource> backing, const PagerOptions& o, EmitFn emit);
  ~Pager() override;

  const char* Kind() const override { return "pager"; }
  uint64_t Size() const override { return pages_ * kPage; }
  int Fetch(uint64_t, void*, uint64_t) override { return -95; }  // pages come only through faults
  int ResolveFault(uint64_t addr, uint8_t* buf, size_t bufLen, bool write) override;
  bool OnWriteFault(uint64_t addr) override;

  // Forget pages [first, first+count): the program freed them. They fault in
  // as zeros again. 0 or a negative errno.
  int Discard(uint64_t first, uint64_t count);
  // Write every page back and drop it from the region, for a hand-over of
  // the region to another pager (its program stopped: no fault comes). 0, or
  // -EIO once write-backs keep failing, -ECANCELED when stopped meanwhile.
  // running: while the program runs on, one pass over the pages resident
  // now (those it faults in meanwhile stay), so that the stopped flush of a
  // hand-over has only what was touched since to write.
  int Flush(bool running = false);
  void Start();
  void Stop();  // joins the write-back thread; later faults are left to the engine's teardown
  const PagerStats& stats() const { return stats_; }
  uint64_t Resident();
  uint64_t Used();
  std::vector<uint8_t> States();

 private:
  static constexpr uint64_t kPage = 4096;
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr uint32_t kSpanGap = 64;  // pages between two victims one write-protect may span
  // kWasDirty outlives residency: the page was dirty when last evicted.
  enum : uint8_t { kDirty = 1, kRef = 2, kPrefetched = 4, kHashed = 8, kVictim = 16, kTrigger = 32, kWasDirty = 64 };
  struct Staged {
    uint32_t page, slot;
  };
  struct Copied {  // a run copied out, to be zapped
    uint32_t first, count;
  };
  // The sequential or strided stream being read ahead: the window the stream
  // is in (counted as hits when it moves on) and the one issued ahead of it,
  // whose first page is the trigger.
  struct Stream {
    bool on = false;
    int64_t stride = 0, next = 0;  // next: the first page after the window ahead
    unsigned depth = 0;
    int64_t curStart = 0, aheadStart = 0;
    unsigned curCount = 0, aheadCount = 0;
    uint32_t trig = UINT32_MAX;  // the page whose fault sends the next window
    bool write = false;          // its last fault was a store (sync tracking): expect stores
  };
  struct Window {  // queued for the readahead thread
    std::vector<uint32_t> pages;
    bool write;  // install them writable and dirty
  };
  struct Backoff {  // a faulting page whose fetch failed (no poison): when to try again
    uint64_t next;
    unsigned failures;
  };

  int Resolve(uint64_t addr, uint8_t* buf, bool write);
  bool Reserve(std::unique_lock<std::mutex>& lk, uint64_t want, uint64_t must, uint64_t* got);
  int ServeHeld(uint32_t page, uint64_t t0, bool write);
  void StartStream(uint32_t page, int64_t stride, unsigned depth, bool write);
  void OnTrigger(uint32_t page, bool write);
  void IssueWindow(int64_t start, int64_t stride, unsigned count);
  void DropHeld();
  void Unfetch(uint32_t page);
  bool NeverStored(uint32_t page) const { return backing_->Unwritten(page); }
  size_t Runs(const uint32_t* pages, size_t n, uint8_t* buf, PageSource::Io* ios);
  int FetchRuns(PageSource::Io* ios, size_t nio);
  void ReadaheadLoop();
  uint64_t EvictSome(uint64_t want);
  uint64_t EvictMove(std::vector<uint32_t>& pages);
  uint64_t EvictMoveRun(uint32_t first, uint32_t slot, uint32_t count);
  uint64_t EvictCopy(std::vector<uint32_t>& pages);
  // Copy eviction: the staging slots are ordinary memory, mapped for good.
  bool PlainStaging() const { return o_.eviction == Eviction::kCopy; }
  bool SpanSafe(uint32_t a, uint32_t b) const;
  void EvictCopySpan(const uint32_t* v, size_t n);
  void Evicted(uint32_t page, uint32_t slot, bool dirty);
  void ScanWritten(std::unique_lock<std::mutex>& lk);
  bool MarkUsed(uint32_t page);  // flags of a page seen written (false: not resident)
  void Place(uint32_t page, uint8_t flags);
  long Copy(uint64_t dst, const void* src, uint64_t len, bool wp, uint64_t* copied = nullptr);
  void Wake(uint64_t addr);
  void ReleaseAll(std::vector<uint32_t>& slots);
  void DropQueuedIn(uint64_t first, uint64_t count);
  void WriteBackLoop();
  uint64_t Base() const { return region_.get()->Addr(); }
  uint64_t FaultBase() const { return faultBase_; }
  uint8_t* Slot(uint32_t s) const { return staging_.get()->base + static_cast<uint64_t>(s) * kPage; }

  std::shared_ptr<UffdCore> core_;
  int fd_;
  Pin region_, staging_;
  std::shared_ptr<PageSource> backing_;
  PagerOptions o_;
  EmitFn emit_;
  uint64_t pages_, lowWater_, faultBase_;
  uint64_t seed_;
  WrittenScanner scanner_;

  std::mutex mu_;
  std::condition_variable frameCv_, wbCv_;
  std::vector<uint8_t> state_, flags_;
  std::vector<uint32_t> frameOf_, slotOf_;
  std::vector<uint64_t> hash_;
  std::vector<uint32_t> frames_, freeFrames_, freeSlots_;
  uint64_t used_ = 0;       // frames held: resident + being fetched + staged
  uint32_t hand_ = 0;       // CLOCK: the next page to look at
  uint64_t sinceScan_ = 0;  // evictions since the last PAGEMAP_SCAN
  std::vector<uint32_t> scanned_, victims_, runSlots_, cleanSlots_;
  std::vector<Copied> copied_;
  Zapper zap_;
  std::vector<unsigned char> incore_;
  std::unordered_map<uint32_t, Backoff> failing_;
  Stream stream_;
  std::deque<Window> raQueue_;
  std::unordered_map<uint32_t, std::vector<uint8_t>> held_;
  std::condition_variable raCv_;
  std::thread ra_;
  std::deque<Staged> wbQueue_;
  // The pages of the write-back batch in flight (its StoreV runs without mu_).
  std::vector<uint32_t> wbInFlight_;
  LeapPrefetcher leap_;
  bool stopping_ = false;
  std::thread wb_;
  PagerStats stats_;
};

}  // namespace sos
