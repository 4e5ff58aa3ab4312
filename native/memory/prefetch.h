// Leap's prefetcher (Al Maruf & Chowdhury, ATC'20): a majority vote over the
// recent fault deltas finds a sequential or strided trend; the window
// fetched along it grows while the stream keeps consuming it and shrinks
// when the trend breaks. Pure bookkeeping: the pager does the fetching.
#pragma once
#include <cstdint>

namespace sos {

class LeapPrefetcher {
 public:
  static constexpr unsigned kHistory = 8;
  explicit LeapPrefetcher(unsigned maxDepth) : maxDepth_(maxDepth ? maxDepth : 1) {}

  struct Plan {
    int64_t stride = 0;  // 0: no trend, prefetch nothing
    unsigned depth = 0;  // pages stride, 2*stride, ... depth*stride past the fault
    // The fault landed on the page right after the previous window: the
    // stream went through it, so its pages count as hits.
    bool consumed = false;
    int64_t winStart = 0, winStride = 0;
    unsigned winCount = 0;
  };

  Plan OnFault(int64_t page) {
    Plan pl;
    bool consumed = expectValid_ && page == expect_;
    int64_t delta = consumed ? winStride_ : page - last_;
    if (consumed) {
      pl.consumed = true;
      pl.winStart = winStart_;
      pl.winStride = winStride_;
      pl.winCount = winCount_;
    }
    if (haveLast_) Push(delta);
    last_ = page;
    haveLast_ = true;
    int64_t d = Majority(4, 3);
    if (!d) d = Majority(kHistory, kHistory / 2 + 1);
    if (!d) {
      depth_ = depth_ > 1 ? depth_ / 2 : 1;
      expectValid_ = false;
      return pl;
    }
    if (consumed)
      depth_ = depth_ * 2 > maxDepth_ ? maxDepth_ : depth_ * 2;
    else if (expectValid_)
      depth_ = depth_ > 1 ? depth_ / 2 : 1;  // trend holds but the window was not used up
    pl.stride = d;
    pl.depth = depth_;
    winStart_ = page + d;
    winStride_ = d;
    winCount_ = depth_;
    expect_ = page + static_cast<int64_t>(depth_ + 1) * d;
    expectValid_ = true;
    return pl;
  }

 private:
  void Push(int64_t d) {
    hist_[head_] = d;
    head_ = (head_ + 1) % kHistory;
    if (n_ < kHistory) n_++;
  }
  // Boyer-Moore majority over the newest w deltas; the delta when it occurs at least need times.
  int64_t Majority(unsigned w, unsigned need) const {
    if (n_ < w) return 0;
    int64_t cand = 0;
    unsigned count = 0;
    for (unsigned i = 0; i < w; i++) {
      int64_t v = hist_[(head_ + kHistory - 1 - i) % kHistory];
      if (!count) {
        cand = v;
        count = 1;
      } else if (v == cand) {
        count++;
      } else {
        count--;
      }
    }
    unsigned seen = 0;
    for (unsigned i = 0; i < w; i++) seen += hist_[(head_ + kHistory - 1 - i) % kHistory] == cand;
    return seen >= need ? cand : 0;
  }

  unsigned maxDepth_;
  unsigned depth_ = 2;
  int64_t hist_[kHistory] = {};
  unsigned head_ = 0, n_ = 0;
  int64_t last_ = 0;
  bool haveLast_ = false;
  int64_t expect_ = 0;
  bool expectValid_ = false;
  int64_t winStart_ = 0, winStride_ = 0;
  unsigned winCount_ = 0;
};

}  // namespace sos
