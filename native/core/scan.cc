#include "core/scan.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>

#include "core/hash.h"
#include "core/index.h"
#include "core/mapping.h"
#include "core/pool.h"
#include "core/zeroed.h"

namespace pagefuse {

namespace {

constexpr uint64_t kChunk = 2ull << 20;
constexpr uint64_t kMemoryItemPages = 512;    // 2 MiB of local memory per work item
constexpr uint64_t kProcessItemPages = 1024;  // 4 MiB per process_vm_readv batch
constexpr size_t kMaxSegments = 1024;         // IOV_MAX
constexpr uint32_t kUnknownSum = 0xffffffffu; // no checksum kept for this page
constexpr uint8_t kCandidate = 1;             // fast mode: the prefilter matched another page
constexpr uint8_t kVolatile = 2;

// Read buffers for process targets, kProcessItemPages pages each. A std::vector per pass left its
// 4 MiB in the malloc arena of each pool thread that ever read a process (glibc raises its mmap
// threshold to the size of a freed mapped block, so later ones come from the arena and stay there):
// measured 8.4 MiB of RSS kept after one two-thread scan, and a pool thread per concurrent task. They
// are mapped directly instead, and up to DefaultThreads() of them are kept between scans, so that a
// later scan neither faults them in nor zeroes them again.
class ReadBuffers {
 public:
  ZeroedArray<unsigned char> Take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        ZeroedArray<unsigned char> b = std::move(free_.back());
        free_.pop_back();
        return b;
      }
    }
    ZeroedArray<unsigned char> b;
    b.reset(bytes);
    return b;
  }
  void Give(ZeroedArray<unsigned char>&& b) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < static_cast<size_t>(DefaultThreads())) free_.push_back(std::move(b));
  }
  // Keeps at most `n`: as many as the last pass read processes with. The tuner's scan before ksmd starts
  // may take several threads, its later rounds one; without this the idle daemon kept the first round's
  // extra 4 MiB for its whole life.
  void Trim(size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() > n) free_.resize(n);
  }
  size_t Kept() {
    std::lock_guard<std::mutex> lock(mu_);
    return free_.size();
  }

 private:
  std::mutex mu_;
  std::vector<ZeroedArray<unsigned char>> free_;
};

ReadBuffers& TheReadBuffers() {
  static ReadBuffers* buffers = new ReadBuffers();  // never destroyed, like the pool
  return *buffers;
}

struct GlobalRun {
  uint64_t global;   // index of its first page among all scanned pages
  uint64_t address;  // byte offset (memory) or virtual address (process)
  uint64_t pages;
  uint32_t target;
  uint32_t firstChunk;
  bool thp;
  bool shared;  // not exclusively mapped: read without pinning (see PageRun)
};

struct Item {
  uint32_t run;     // first run
  uint64_t offset;  // first page within it
  uint64_t pages;   // spans consecutive runs of one target, so its global indices are contiguous
  uint64_t global;
};

struct Counters {
  uint64_t scanned = 0, zero = 0, thpZero = 0, volatilePages = 0, unreadable = 0, indexed = 0, distinct = 0,
           merging = 0, sampled = 0;
};

struct ThreadStats {
  std::vector<Counters> t;
  uint64_t collisions = 0, changed = 0, unconfirmed = 0;
};

enum class Pass { kPrefilter, kFull };

class Engine {
 public:
  Engine(const std::vector<ScanTarget>& targets, const ScanOptions& options, ScanControl& control, ScanResult* result)
      : targets_(targets), options_(options), control_(control), result_(result), k_(Kernels()) {}

  int Run(std::string* what);

 private:
  int Prepare(std::string* what);
  void RunPass(Pass pass, std::vector<ThreadStats>* stats);
  void ProcessItem(const Item& item, Pass pass, ThreadStats& ts, unsigned char* buf, unsigned char* scratch);
  void ProcessPage(Pass pass, const unsigned char* page, uint64_t hash, bool linesZero, uint64_t g, uint64_t address,
                   const GlobalRun& run, const Item& item, const unsigned char* itemData, ThreadStats& ts,
                   unsigned char* scratch);
  bool Same(const unsigned char* page, uint64_t hash, uint64_t first, const Item& item, const unsigned char* itemData,
            ThreadStats& ts, unsigned char* scratch);
  const GlobalRun& RunOf(uint64_t g) const;
  void PrefetchPage(const unsigned char* p) const {
    for (uint64_t l = 0; l < page_; l += 64) __builtin_prefetch(p + l);
  }
  uint32_t ChunkOf(const GlobalRun& run, uint64_t address) const {
    return run.firstChunk + static_cast<uint32_t>(address / kChunk - run.address / kChunk);
  }
  bool VolatileCheck(uint32_t t) const { return checkVolatile_[t]; }
  // Keeps target t's page checksums for a later scan: shared with the other targets after the full pass
  // (`share`), copied after the prefilter pass.
  void BuildState(uint32_t t, bool share);

  const std::vector<ScanTarget>& targets_;
  const ScanOptions& options_;
  ScanControl& control_;
  ScanResult* result_;
  const HashKernels& k_;
  uint64_t page_ = PageSize();
  uint64_t seed_ = HashSeed();
  uint64_t hashMask_ = ~0ull;
  uint64_t zeroHash_ = 0;

  std::vector<GlobalRun> runs_;
  std::vector<Item> items_;
  std::vector<uint64_t> chunkAddress_;
  std::vector<uint32_t> chunkPages_;
  std::vector<uint32_t> chunkTarget_;
  std::vector<uint32_t> chunkThpPages_;
  ZeroedArray<std::atomic<uint32_t>> chunkDup_;
  ZeroedArray<std::atomic<uint32_t>> chunkThpZero_;
  ZeroedArray<std::atomic<uint32_t>> chunkThpDup_;
  std::vector<bool> checkVolatile_;
  std::vector<ScanMode> sumKind_;
  uint64_t pages_ = 0;

  ZeroedArray<uint32_t> lows_;
  std::shared_ptr<ZeroedArray<uint32_t>> sharedLows_;  // lows_, once page states refer to it
  ZeroedArray<uint8_t> flags_;
  std::unique_ptr<ContentIndex> index_;
  std::unique_ptr<std::atomic<bool>[]> vanished_;
  std::atomic<size_t> next_{0};
  std::atomic<int> error_{0};
  std::atomic<uint32_t> errorTarget_{0};
};

int Engine::Prepare(std::string* what) {
  const uint32_t T = static_cast<uint32_t>(targets_.size());
  result_->targets.assign(T, TargetResult{});
  vanished_.reset(new std::atomic<bool>[T]());
  checkVolatile_.assign(T, false);
  sumKind_.assign(T, ScanMode::kExact);
  for (uint32_t t = 0; t < T; t++) {
    const ScanTarget& target = targets_[t];
    TargetResult& tr = result_->targets[t];
    std::vector<PageRun> runs;
    if (!target.process) {
      tr.tailBytes = target.length % page_;
      if (target.length >= page_) runs.push_back(PageRun{0, target.length / page_, false});
    } else {
      std::vector<AnonMapping> maps;
      int err = ReadAnonMappings(options_.procRoot, target.pid, target.mergeableOnly, &maps);
      ResidentScan resident;
      if (err == 0) err = ReadResidentPages(options_.procRoot, target.pid, maps, &resident, &control_.cancel);
      if (err == ECANCELED) return ECANCELED;
      if ((err == ESRCH && options_.skipMissing) || (err == EPERM && options_.skipDenied)) {
        // Gone between being listed and being scanned, or not ours to read: a target without pages.
        // (vanished_ is what the result reports: a process that never existed is vanished too.)
        if (err == ESRCH) vanished_[t].store(true, std::memory_order_relaxed);
        else tr.denied = true;
        resident = ResidentScan{};
        err = 0;
      }
      if (err != 0) {
        *what = "process " + std::to_string(target.pid);
        return err;
      }
      runs = std::move(resident.runs);
      tr.absentPages = resident.absentPages;
      tr.zeroMappedPages = resident.zeroMappedPages;
      tr.flagsKnown = resident.flagsKnown;
    }
    sumKind_[t] = options_.mode == ScanMode::kFast && !target.process ? ScanMode::kFast : ScanMode::kExact;
    checkVolatile_[t] = target.previous && options_.mode != ScanMode::kSampled && target.previous->mode == sumKind_[t];
    // Chunks of 2 MiB of address space that hold scanned pages, in address order.
    uint32_t chunkBase = static_cast<uint32_t>(chunkAddress_.size());
    for (const PageRun& r : runs) {
      uint64_t c0 = r.address / kChunk;
      uint64_t c1 = (r.address + r.pages * page_ - 1) / kChunk;
      if (chunkAddress_.size() == chunkBase || chunkAddress_.back() != c0 * kChunk) {
        chunkAddress_.push_back(c0 * kChunk);
        chunkPages_.push_back(0);
        chunkThpPages_.push_back(0);
        chunkTarget_.push_back(t);
      }
      uint32_t first = static_cast<uint32_t>(chunkAddress_.size() - 1);
      for (uint64_t c = c0 + 1; c <= c1; c++) {
        chunkAddress_.push_back(c * kChunk);
        chunkPages_.push_back(0);
        chunkThpPages_.push_back(0);
        chunkTarget_.push_back(t);
      }
      for (uint64_t c = c0; c <= c1; c++) {
        uint64_t lo = std::max(c * kChunk, r.address);
        uint64_t hi = std::min((c + 1) * kChunk, r.address + r.pages * page_);
        chunkPages_[first + (c - c0)] += static_cast<uint32_t>((hi - lo) / page_);
        if (r.thp) chunkThpPages_[first + (c - c0)] += static_cast<uint32_t>((hi - lo) / page_);
      }
      runs_.push_back(GlobalRun{pages_, r.address, r.pages, t, first, r.thp, r.shared});
      pages_ += r.pages;
    }
  }
  if (pages_ >= 0xffffffffull) {
    *what = "the targets";
    return EOVERFLOW;  // page references are 32-bit: 16 TiB per scan
  }
  // Work items: consecutive pages of one target, at most one read batch each.
  for (uint32_t i = 0; i < runs_.size();) {
    const uint32_t t = runs_[i].target;
    const bool process = targets_[t].process;
    const uint64_t limit = process ? kProcessItemPages : kMemoryItemPages;
    uint64_t offset = 0;
    while (i < runs_.size() && runs_[i].target == t) {
      Item item{i, offset, 0, runs_[i].global + offset};
      size_t segments = 0;
      while (i < runs_.size() && runs_[i].target == t && item.pages < limit && segments < kMaxSegments) {
        uint64_t take = std::min(runs_[i].pages - offset, limit - item.pages);
        item.pages += take;
        segments++;
        offset += take;
        if (offset == runs_[i].pages) {
          i++;
          offset = 0;
        }
      }
      items_.push_back(item);
    }
  }
  chunkDup_.reset(chunkAddress_.size());
  chunkThpZero_.reset(chunkAddress_.size());
  chunkThpDup_.reset(chunkAddress_.size());
  control_.bytesTotal.store(pages_ * page_);
  return 0;
}

const GlobalRun& Engine::RunOf(uint64_t g) const {
  auto it = std::upper_bound(runs_.begin(), runs_.end(), g, [](uint64_t v, const GlobalRun& r) { return v < r.global; });
  return *(it - 1);
}

bool Engine::Same(const unsigned char* page, uint64_t hash, uint64_t first, const Item& item,
                  const unsigned char* itemData, ThreadStats& ts, unsigned char* scratch) {
  const GlobalRun& r = RunOf(first);
  const ScanTarget& target = targets_[r.target];
  uint64_t address = r.address + (first - r.global) * page_;
  const unsigned char* other = nullptr;
  if (!target.process) {
    other = target.data + address;
  } else if (itemData != nullptr && first >= item.global && first < item.global + item.pages) {
    other = itemData + (first - item.global) * page_;  // read in this very batch
  } else {
    std::vector<bool> failed;
    uint64_t len = page_;
    const bool viaMem = r.shared;
    if (ReadRemote(target.pid, &address, &len, 1, scratch, &failed, &viaMem) != 0 || failed[0]) {
      ts.unconfirmed++;
      return true;  // the first copy is gone: trust the 64-bit hash
    }
    other = scratch;
  }
  if (std::memcmp(page, other, page_) == 0) return true;
  if ((k_.hash(other, page_, seed_) & hashMask_) != hash) {
    ts.changed++;  // the first copy was rewritten after it was hashed: not a collision
    return true;
  }
  return false;
}

// `hash` was computed by the caller (the prefilter hash in the prefilter pass), batched so that the
// index's cache misses overlap.
void Engine::ProcessPage(Pass pass, const unsigned char* page, uint64_t hash, bool linesZero, uint64_t g,
                         uint64_t address, const GlobalRun& run, const Item& item, const unsigned char* itemData,
                         ThreadStats& ts, unsigned char* scratch) {
  const uint32_t t = run.target;
  Counters& c = ts.t[t];
  const std::shared_ptr<const PageState>& prev = targets_[t].previous;
  uint32_t sum = 0;

  if (pass == Pass::kPrefilter) {
    const uint64_t pf = hash;
    if (VolatileCheck(t) && prev->Lookup(address, &sum) && sum != (pf & kLowMask)) {
      lows_[g] = static_cast<uint32_t>(pf) & kLowMask;
      __atomic_fetch_or(&flags_[g], kVolatile, __ATOMIC_RELAXED);
      c.volatilePages++;
      return;
    }
    if (linesZero) __atomic_fetch_or(&flags_[g], kCandidate, __ATOMIC_RELAXED);
    ContentIndex::Outcome o = index_->Insert(pf, g, 0, [](uint64_t) { return true; }, &ts.collisions);
    if (!o.inserted) {
      __atomic_fetch_or(&flags_[g], kCandidate, __ATOMIC_RELAXED);
      __atomic_fetch_or(&flags_[o.first], kCandidate, __ATOMIC_RELAXED);
    }
    return;
  }

  c.scanned++;
  const uint32_t chunk = ChunkOf(run, address);
  bool checkVolatile = VolatileCheck(t);
  if (flags_ && !targets_[t].process) {
    uint8_t f = __atomic_load_n(&flags_[g], __ATOMIC_RELAXED);
    if (f & kVolatile) return;  // counted by the prefilter pass
    if (!(f & kCandidate)) {
      c.indexed++;  // no other page starts like it: a content of its own
      c.distinct++;
      return;
    }
    checkVolatile = false;  // done by the prefilter pass
  }
  const uint64_t h = hash;
  const uint32_t low = static_cast<uint32_t>(h) & kLowMask;
  if (checkVolatile && prev->Lookup(address, &sum) && sum != low) {
    if (lows_) lows_[g] = low;
    c.volatilePages++;
    return;
  }
  if (h == zeroHash_ && k_.isZero(page, page_)) {
    if (lows_) lows_[g] = low;
    c.zero++;
    if (run.thp) {
      c.thpZero++;
      chunkThpZero_[chunk].fetch_add(1, std::memory_order_relaxed);
    }
    chunkDup_[chunk].fetch_add(1, std::memory_order_relaxed);
    return;
  }
  c.indexed++;
  if (options_.mode == ScanMode::kSampled) {
    if ((h & (options_.sampleRate - 1)) != 0) return;
    c.sampled++;
  }
  auto same = [&](uint64_t first) { return Same(page, h, first, item, itemData, ts, scratch); };
  ContentIndex::Outcome o = index_->Insert(h, g, t, same, &ts.collisions);
  if (o.first == ContentIndex::kFull) {
    int expected = 0;
    error_.compare_exchange_strong(expected, ENOSPC);  // only a sample far off its expected size fills it
    return;
  }
  if (o.inserted) {
    if (o.newForTarget) c.distinct++;
    return;
  }
  if (o.newForTarget) c.distinct++;
  c.merging++;
  chunkDup_[chunk].fetch_add(1, std::memory_order_relaxed);
  if (run.thp) chunkThpDup_[chunk].fetch_add(1, std::memory_order_relaxed);
  if (o.becameDuplicate) {
    const GlobalRun& fr = RunOf(o.first);
    ts.t[fr.target].merging++;
    const uint32_t firstChunk = ChunkOf(fr, fr.address + (o.first - fr.global) * page_);
    chunkDup_[firstChunk].fetch_add(1, std::memory_order_relaxed);
    if (fr.thp) chunkThpDup_[firstChunk].fetch_add(1, std::memory_order_relaxed);
  }
}

void Engine::ProcessItem(const Item& item, Pass pass, ThreadStats& ts, unsigned char* buf,
                         unsigned char* scratch) {
  const uint32_t t = runs_[item.run].target;
  const ScanTarget& target = targets_[t];
  if (pass == Pass::kPrefilter && target.process) return;  // fast mode reads processes whole, in the full pass
  if (target.process && vanished_[t].load(std::memory_order_relaxed)) return;

  // The item's segments: one per run it touches.
  struct Segment {
    uint32_t run;
    uint64_t offset, pages;
  };
  Segment segs[kMaxSegments];
  size_t nseg = 0;
  for (uint32_t r = item.run, left = 0; left < item.pages; r++) {
    uint64_t off = r == item.run ? item.offset : 0;
    uint64_t take = std::min(runs_[r].pages - off, item.pages - left);
    segs[nseg++] = Segment{r, off, take};
    left += static_cast<uint32_t>(take);
  }

  const unsigned char* data = nullptr;
  std::vector<bool> failed(nseg, false);
  if (target.process) {
    uint64_t addrs[kMaxSegments], lens[kMaxSegments];
    bool viaMem[kMaxSegments];
    for (size_t i = 0; i < nseg; i++) {
      addrs[i] = runs_[segs[i].run].address + segs[i].offset * page_;
      lens[i] = segs[i].pages * page_;
      viaMem[i] = runs_[segs[i].run].shared;
    }
    int err = ReadRemote(target.pid, addrs, lens, nseg, buf, &failed, viaMem);
    if (err == ESRCH) {
      vanished_[t].store(true, std::memory_order_relaxed);
      return;
    }
    if (err != 0) {
      int expected = 0;
      if (error_.compare_exchange_strong(expected, err)) errorTarget_.store(t);
      return;
    }
    data = buf;
  }

  // Pages in batches: hash a batch, prefetch the index slots its hashes probe, then insert.
  // Pages per batch. The prefilter is quick: 16 pages of it cover a slot fetched from memory. A full
  // hash takes about 100 ns: measured on 512 MiB, 2 pages beat 4 and 16, whose prefetched slots
  // fall out of L1 before they are used, and two pages of hashing still cover a fetch from memory.
  constexpr size_t kBatch = 16;
  const size_t batch = pass == Pass::kPrefilter ? kBatch : 2;
  struct Pending {
    const unsigned char* page;
    uint64_t g, address, hash;
    const GlobalRun* run;
    bool linesZero;
  };
  // Two batches in flight: the slots of one are being fetched while the next one is hashed.
  Pending batches[2][kBatch];
  size_t counts[2] = {0, 0};
  int cur = 0;
  auto insert = [&](int which) {
    for (size_t b = 0; b < counts[which]; b++) {
      const Pending& q = batches[which][b];
      ProcessPage(pass, q.page, q.hash, q.linesZero, q.g, q.address, *q.run, item, data, ts, scratch);
    }
    counts[which] = 0;
  };
  auto flush = [&] {
    for (size_t b = 0; b < counts[cur]; b++) {
      if (batches[cur][b].page != nullptr) index_->Prefetch(batches[cur][b].hash);
    }
    cur ^= 1;
    insert(cur);
  };
  const bool fastFull = pass == Pass::kFull && flags_ && !target.process;
  // The first cache line of the page kTouchAhead pages ahead is requested before each page is
  // hashed, and the item's first kTouchAhead pages' first lines at its start. The hardware
  // prefetcher stops at every 4 KiB page and a page's first touch waits for its address translation
  // (two-level in a VM): one early touch per page has both under way well before the hash gets there
  // (measured, one thread, 1 GiB: AES 0.60-0.72 to 0.77-0.89 × the read; XXH3 0.68-0.75 to 0.80-0.89
  // at load 4, 0.80 to 0.82-0.86 on a quiet machine; see docs/scan.md, Speed).
  constexpr uint64_t kTouchAhead = 10;
  if (pass == Pass::kFull) {
    uint64_t pos0 = 0;
    for (size_t i = 0; i < nseg && pos0 < kTouchAhead; i++) {
      const GlobalRun& run = runs_[segs[i].run];
      for (uint64_t p = 0; p < segs[i].pages && pos0 < kTouchAhead; p++, pos0++) {
        __builtin_prefetch(target.process ? data + pos0 * page_ : target.data + run.address + (segs[i].offset + p) * page_);
      }
    }
  }
  uint64_t pos = 0;
  for (size_t i = 0; i < nseg; i++) {
    const GlobalRun& run = runs_[segs[i].run];
    for (uint64_t p = 0; p < segs[i].pages; p++, pos++) {
      uint64_t g = item.global + pos;
      uint64_t address = run.address + (segs[i].offset + p) * page_;
      if (failed[i]) {
        if (pass == Pass::kFull) ts.t[t].unreadable++;
        continue;
      }
      const unsigned char* page = target.process ? data + pos * page_ : target.data + address;
      Pending& q = batches[cur][counts[cur]++];
      q = Pending{page, g, address, 0, &run, false};
      if (pass == Pass::kPrefilter) {
        if (p + 4 < segs[i].pages) {
          const unsigned char* ahead = page + 4 * page_;
          __builtin_prefetch(ahead);
          __builtin_prefetch(ahead + ((page_ / 4 + 192) & ~63ull));
          __builtin_prefetch(ahead + ((page_ / 2 + 448) & ~63ull));
          __builtin_prefetch(ahead + page_ - 64);
        }
        q.hash = k_.prefilter(page, page_, seed_, &q.linesZero) & hashMask_;
      } else if (fastFull && __atomic_load_n(&flags_[g], __ATOMIC_RELAXED) != kCandidate) {
        q.page = nullptr;  // proven unique or volatile by the prefilter: no hash needed
      } else {
        // The hardware prefetcher stops at page boundaries: the page after next is pulled in a few
        // lines at a time while this one is hashed (measured: 2 pages ahead beats 1 by about 3 %);
        // at the start of a stretch the next page is requested at once.
        const unsigned char* next = nullptr;
        if (target.process) {
          if (pos == 0 && 1 < item.pages) PrefetchPage(data + page_);
          if (pos + 2 < item.pages) next = data + (pos + 2) * page_;
          if (pos + kTouchAhead < item.pages) __builtin_prefetch(data + (pos + kTouchAhead) * page_);
        } else {
          if (p == 0 && 1 < segs[i].pages) PrefetchPage(page + page_);
          if (p + 2 < segs[i].pages) next = page + 2 * page_;
          if (p + kTouchAhead < segs[i].pages) __builtin_prefetch(page + kTouchAhead * page_);
        }
        q.hash = k_.hashNext(page, page_, seed_, next) & hashMask_;
      }
      if (counts[cur] == batch) flush();
    }
  }
  flush();
  flush();
  if (pass == Pass::kFull) {
    uint64_t done = control_.bytesDone.fetch_add(item.pages * page_, std::memory_order_relaxed) + item.pages * page_;
    if (control_.onProgress) control_.onProgress(done, control_.bytesTotal.load(std::memory_order_relaxed));
  }
}

void Engine::RunPass(Pass pass, std::vector<ThreadStats>* stats) {
  next_.store(0);
  const int threads = std::max(1, options_.threads);
  if (stats->size() != static_cast<size_t>(threads)) {  // counts add up over the passes
    stats->assign(threads, ThreadStats{});
    for (ThreadStats& s : *stats) s.t.assign(targets_.size(), Counters{});
  }
  std::atomic<size_t> readers{0};  // threads that read a process in this pass
  ParallelRun(threads, [&](int id) {
    ThreadStats& ts = (*stats)[id];
    ZeroedArray<unsigned char> buf;
    std::vector<unsigned char> scratch(page_);
    for (;;) {
      if (control_.cancel.load(std::memory_order_relaxed) || error_.load(std::memory_order_relaxed) != 0) break;
      size_t k = next_.fetch_add(1, std::memory_order_relaxed);
      if (k >= items_.size()) break;
      const Item& item = items_[k];
      if (targets_[runs_[item.run].target].process && !buf) buf = TheReadBuffers().Take(kProcessItemPages * page_);
      ProcessItem(item, pass, ts, buf.get(), scratch.data());
    }
    if (buf) {
      readers.fetch_add(1, std::memory_order_relaxed);
      TheReadBuffers().Give(std::move(buf));
    }
  });
  if (readers.load() > 0) TheReadBuffers().Trim(readers.load());
}

void Engine::BuildState(uint32_t t, bool share) {
  auto state = std::make_shared<PageState>();
  state->mode = sumKind_[t];
  if (share) {
    // The checksums are the low bits of the page hashes the index keeps anyway: after the full pass
    // every target's state refers to them instead of copying them.
    if (!sharedLows_) sharedLows_ = std::make_shared<ZeroedArray<uint32_t>>(std::move(lows_));
    state->sums = sharedLows_;
    for (const GlobalRun& r : runs_) {
      if (r.target != t) continue;
      state->runFirst.push_back(r.global);
      state->runs.push_back(PageRun{r.address, r.pages, r.thp, r.shared});
    }
  } else {
    // After the prefilter pass: a copy, as the full pass overwrites candidates' entries.
    uint64_t pages = 0;
    for (const GlobalRun& r : runs_) pages += r.target == t ? r.pages : 0;
    auto sums = std::make_shared<ZeroedArray<uint32_t>>();
    sums->reset(pages ? pages : 1);
    uint64_t at = 0;
    for (const GlobalRun& r : runs_) {
      if (r.target != t) continue;
      state->runFirst.push_back(at);
      state->runs.push_back(PageRun{r.address, r.pages, r.thp, r.shared});
      for (uint64_t i = 0; i < r.pages; i++) (*sums)[at++] = lows_[r.global + i];
    }
    state->sums = std::move(sums);
  }
  result_->targets[t].state = std::move(state);
}

int Engine::Run(std::string* what) {
  auto start = std::chrono::steady_clock::now();
  result_->kernel = k_.name;
  if (options_.hashBits < 64) hashMask_ = (1ull << options_.hashBits) - 1;
  std::vector<unsigned char> zeros(page_, 0);
  zeroHash_ = k_.hash(zeros.data(), page_, seed_) & hashMask_;

  int err = Prepare(what);
  if (err != 0) return err;
  const uint32_t T = static_cast<uint32_t>(targets_.size());
  const bool sampled = options_.mode == ScanMode::kSampled;
  uint64_t peak = 0;
  if (!sampled) {
    lows_.reset(pages_ ? pages_ : 1);
    std::fill(lows_.get(), lows_.get() + pages_, kUnknownSum);
  }
  std::vector<ThreadStats> stats;
  uint64_t contents = pages_;
  if (options_.mode == ScanMode::kFast) {
    flags_.reset(pages_ ? pages_ : 1);
    index_.reset(new ContentIndex(pages_, lows_.get(), 1, false, options_.threads > 1));
    peak = pages_ * 5 + index_->bytes();
    RunPass(Pass::kPrefilter, &stats);
    index_.reset();
    if (control_.cancel.load()) return ECANCELED;
    // The full index needs room only for candidates and for the pages of processes.
    contents = 0;
    for (uint64_t g = 0; g < pages_; g++) contents += flags_[g] & kCandidate;
    for (const GlobalRun& r : runs_) {
      if (targets_[r.target].process) contents += r.pages;
    }
    if (options_.keepState) {
      for (uint32_t t = 0; t < T; t++) {
        if (!targets_[t].process) BuildState(t, false);
      }
    }
  }
  uint64_t sampleRoom = 0;
  if (sampled) {
    // Distinct sampled contents are at most a binomial draw over the pages: room for 8 deviations.
    uint64_t expect = pages_ / options_.sampleRate;
    sampleRoom = expect + 8 * static_cast<uint64_t>(std::sqrt(static_cast<double>(expect))) + 256;
    contents = sampleRoom;
  }
  // Without `sharing` the index keeps no bitmask of targets: one target as far as it knows.
  index_.reset(new ContentIndex(contents, sampled ? nullptr : lows_.get(), options_.sharing ? T : 1, sampled,
                                options_.threads > 1));
  peak = std::max(peak, (sampled ? 0 : pages_ * 4) + (flags_ ? pages_ : 0) + index_->bytes());
  RunPass(Pass::kFull, &stats);
  if (control_.cancel.load()) return ECANCELED;
  if (error_.load() != 0) {
    *what = error_.load() == ENOSPC ? "the sampled index (raise sampleRate)"
                                    : "process " + std::to_string(targets_[errorTarget_.load()].pid);
    return error_.load();
  }

  // Totals.
  for (uint32_t t = 0; t < T; t++) {
    TargetResult& tr = result_->targets[t];
    Counters sum;
    for (const ThreadStats& s : stats) {
      const Counters& c = s.t[t];
      sum.scanned += c.scanned;
      sum.zero += c.zero;
      sum.thpZero += c.thpZero;
      sum.volatilePages += c.volatilePages;
      sum.unreadable += c.unreadable;
      sum.indexed += c.indexed;
      sum.distinct += c.distinct;
      sum.merging += c.merging;
      sum.sampled += c.sampled;
    }
    tr.pages = sum.scanned;
    tr.zeroPages = sum.zero;
    tr.thpZeroPages = sum.thpZero;
    tr.volatilePages = sum.volatilePages;
    tr.unreadablePages = sum.unreadable;
    tr.indexedPages = sum.indexed;
    tr.sampledPages = sum.sampled;
    tr.distinct = sum.distinct;
    tr.mergingPages = sum.merging;
    tr.vanished = vanished_[t].load();
    tr.volatilityChecked = checkVolatile_[t];
    result_->sampledPages += sum.sampled;
  }
  for (const ThreadStats& s : stats) {
    result_->collisions += s.collisions;
    result_->changedDuringScan += s.changed;
    result_->unconfirmed += s.unconfirmed;
  }
  // Global distinct contents, sharing between targets, and the sampled mode's spread.
  if (options_.sharing) result_->sharing.assign(T, std::vector<uint64_t>(T, 0));
  std::vector<uint32_t> bits;
  // One target, exact or fast: the contents were counted as they were inserted.
  const bool walk = T > 1 || sampled;
  if (!walk) {
    for (const ThreadStats& st : stats) result_->distinct += st.t[0].distinct;
  }
  for (uint64_t s = 0; walk && s < index_->capacity(); s++) {
    if (index_->Ref(s) == 0) continue;
    result_->distinct++;
    if (sampled) {
      double x = index_->Extra(s);
      result_->sumSquares += x * x;
    }
    const std::atomic<uint64_t>* mask = index_->Mask(s);
    if (mask == nullptr) continue;
    bits.clear();
    for (uint32_t w = 0; w < index_->maskWords(); w++) {
      uint64_t m = mask[w].load(std::memory_order_relaxed);
      while (m) {
        bits.push_back(w * 64 + static_cast<uint32_t>(__builtin_ctzll(m)));
        m &= m - 1;
      }
    }
    if (bits.size() < 2) continue;
    for (size_t i = 0; i < bits.size(); i++) {
      result_->targets[bits[i]].sharedWithOthers++;
      for (size_t j = i + 1; j < bits.size(); j++) {
        result_->sharing[bits[i]][bits[j]]++;
        result_->sharing[bits[j]][bits[i]]++;
      }
    }
  }
  if (walk && options_.mode == ScanMode::kFast) {
    // Pages the prefilter alone proved unique are contents of their own, outside the index.
    for (uint32_t t = 0; t < T; t++) {
      if (targets_[t].process) continue;
      uint64_t own = 0;
      for (const GlobalRun& r : runs_) {
        if (r.target != t) continue;
        for (uint64_t i = 0; i < r.pages; i++) {
          uint8_t f = flags_[r.global + i];
          own += !(f & (kCandidate | kVolatile));
        }
      }
      result_->distinct += own;
    }
  }
  for (uint32_t t = 0; t < T; t++) {
    TargetResult& tr = result_->targets[t];
    if (T == 1 && !sampled) tr.distinct = result_->distinct;
    // Without the bitmask a content counted as distinct for the target that inserted it first only.
    if (!options_.sharing && T > 1) tr.distinct = 0;
    if (options_.sharing) result_->sharing[t][t] = (sampled ? tr.sampledPages : tr.indexedPages) - tr.distinct;
  }
  // Density per 2 MiB chunk.
  for (size_t c = 0; c < chunkAddress_.size(); c++) {
    result_->targets[chunkTarget_[c]].density.push_back(
        DensityChunk{chunkAddress_[c], chunkPages_[c], chunkDup_[c].load(std::memory_order_relaxed), chunkThpPages_[c],
                     chunkThpZero_[c].load(std::memory_order_relaxed), chunkThpDup_[c].load(std::memory_order_relaxed)});
  }
  if (options_.keepState && !sampled) {
    for (uint32_t t = 0; t < T; t++) {
      if (sumKind_[t] == ScanMode::kExact) BuildState(t, true);
    }
  }
  result_->indexBytes = peak;
  for (const TargetResult& tr : result_->targets) result_->bytesScanned += tr.pages * page_;
  result_->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return 0;
}

}  // namespace

bool PageState::Lookup(uint64_t address, uint32_t* sum) const {
  auto it = std::upper_bound(runs.begin(), runs.end(), address,
                             [](uint64_t a, const PageRun& r) { return a < r.address; });
  if (it == runs.begin()) return false;
  size_t i = static_cast<size_t>(it - runs.begin()) - 1;
  const PageRun& r = runs[i];
  uint64_t page = PageSize();
  if (address >= r.address + r.pages * page) return false;
  uint32_t v = (*sums)[runFirst[i] + (address - r.address) / page];
  if (v == kUnknownSum) return false;
  *sum = v & kLowMask;
  return true;
}

size_t KeptReadBuffers() { return TheReadBuffers().Kept(); }

int RunScan(const std::vector<ScanTarget>& targets, const ScanOptions& options, ScanControl& control,
            ScanResult* result, std::string* what) {
  if (options.mode == ScanMode::kSampled &&
      (options.sampleRate == 0 || (options.sampleRate & (options.sampleRate - 1)) != 0)) {
    *what = "sampleRate";
    return EINVAL;
  }
  Engine engine(targets, options, control, result);
  return engine.Run(what);
}

}  // namespace pagefuse
