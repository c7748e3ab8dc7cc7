// The duplicate-estimation scan: hashes the pages of one or more targets (memory of this process,
// or another process by pid) into one content index and counts what KSM could merge.
// A ScanJob is a plain struct: the binding fills it on the JS thread, RunScan works on it on a
// worker thread, the binding turns the result into JS. No Node headers.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/procmem.h"
#include "core/zeroed.h"

namespace pagefuse {

enum class ScanMode { kExact = 0, kFast = 1, kSampled = 2 };

// Per-page checksums of one target from a previous scan, kept in-process (never exported) so the
// next scan can leave out pages that changed in between, as ksmd's checksum does.
struct PageState {
  ScanMode mode;               // exact: low bits of the page hash; fast: of the prefilter hash
  std::vector<PageRun> runs;   // address order; for memory targets the address is the byte offset
  std::vector<uint64_t> runFirst;  // index in `sums` of each run's first page
  // Low 31 bits of each page's hash (bit 31 is ignored), 0xffffffff where the page was not hashed;
  // the targets of one scan share one array.
  std::shared_ptr<const ZeroedArray<uint32_t>> sums;
  // The checksum kept for the page at `address`, or false when that page was not scanned then.
  bool Lookup(uint64_t address, uint32_t* sum) const;
};

struct ScanTarget {
  bool process = false;
  // memory targets
  const unsigned char* data = nullptr;
  uint64_t length = 0;  // bytes; a tail shorter than a page is reported, not scanned
  // process targets
  pid_t pid = 0;
  bool mergeableOnly = true;
  std::shared_ptr<const PageState> previous;
};

struct DensityChunk {
  uint64_t address;  // 2 MiB-aligned: byte offset for memory targets, virtual address for processes
  uint32_t pages;
  uint32_t duplicatePages;  // pages whose content occurs more than once (zero pages included)
  // Transparent huge pages (known as root only): ksmd splits a huge page to merge any subpage of it,
  // and the split maps its zero-filled subpages to the shared zero page, freeing them.
  uint32_t thpPages;             // pages of this chunk inside huge pages
  uint32_t thpZeroPages;         // zero-filled ones among them
  uint32_t thpDuplicatePages;    // non-zero ones whose content occurs more than once
};

struct TargetResult {
  uint64_t pages = 0;           // pages scanned
  uint64_t zeroPages = 0;
  uint64_t thpZeroPages = 0;    // zero pages inside transparent huge pages: ksmd does not count them
  uint64_t volatilePages = 0;   // changed since the previous scan: left out, as ksmd does
  uint64_t unreadablePages = 0; // resident when listed, unreadable when read (unmapped meanwhile)
  uint64_t absentPages = 0;     // process targets: not resident (never touched, swapped out)
  uint64_t zeroMappedPages = 0; // process targets: mapped to the shared zero page (root only)
  uint64_t indexedPages = 0;    // pages that went into the index (not zero, not volatile, readable)
  uint64_t sampledPages = 0;    // sampled mode: indexed pages whose hash fell in the sample
  uint64_t distinct = 0;        // distinct non-zero contents in this target (sampled: in the sample);
                                // without options.sharing and with two targets or more, 0: not known
  uint64_t mergingPages = 0;    // pages of this target whose content occurs twice or more anywhere
  uint64_t sharedWithOthers = 0;// distinct contents also present in another target
  uint64_t tailBytes = 0;
  bool vanished = false;        // the process exited during the scan
  bool denied = false;          // skipDenied: the process could not be read
  bool flagsKnown = false;      // kpageflags was readable: THP and zero-page mappings are known
  bool volatilityChecked = false; // a previous state of the same kind was compared against
  std::vector<DensityChunk> density;
  std::shared_ptr<PageState> state;
};

struct ScanOptions {
  ScanMode mode = ScanMode::kExact;
  int threads = 1;
  uint32_t sampleRate = 64;   // sampled mode: keep contents whose hash is 0 modulo this (a power of 2)
  int hashBits = 64;          // tests only: a narrow hash forces collisions the byte compare must catch
  bool keepState = true;
  // Count contents per target with a bitmask of targets per content (8 bytes per index slot per 64
  // targets, two targets or more): what targets share and each target's distinct contents. Without it
  // only the totals and the counts that need no per-target set are made; `sharing` is left empty.
  bool sharing = true;
  bool skipMissing = false;   // a process that does not exist is a vanished target, not an error
  bool skipDenied = false;    // a process we may not read is a denied target, not an error
  std::string procRoot = "/proc";
};

struct ScanResult {
  std::vector<TargetResult> targets;
  // [i][j]: distinct contents in both; [i][i]: duplicates inside i. Empty without options.sharing.
  std::vector<std::vector<uint64_t>> sharing;
  uint64_t distinct = 0;          // distinct non-zero contents overall (sampled: in the sample)
  uint64_t collisions = 0;        // equal hashes, different bytes: caught by the byte compare
  uint64_t changedDuringScan = 0; // a first copy changed between hashing and comparing
  uint64_t unconfirmed = 0;       // matches that could not be compared (first copy unreadable)
  uint64_t indexBytes = 0;        // peak bytes of the index structures
  uint64_t bytesScanned = 0;
  double seconds = 0;
  const char* kernel = "";
  // sampled mode
  uint64_t sampledPages = 0;      // indexed pages whose hash fell in the sample
  double sumSquares = 0;          // Σ (extra copies)² over sampled contents, for the error bound
};

struct ScanControl {
  std::atomic<bool> cancel{false};
  std::atomic<uint64_t> bytesDone{0};
  std::atomic<uint64_t> bytesTotal{0};
  // Called by the hashing threads after each batch of pages (about 2–4 MiB); must be thread-safe.
  std::function<void(uint64_t done, uint64_t total)> onProgress;
};

// Read buffers kept between scans for reading processes (4 MiB each): at most as many as the last pass
// that read a process used. For tests.
size_t KeptReadBuffers();

// Runs the scan. Returns 0, ECANCELED when control.cancel was set, or an errno with *what saying
// which target failed (ESRCH: no such process; EPERM: not allowed to read it).
int RunScan(const std::vector<ScanTarget>& targets, const ScanOptions& options, ScanControl& control,
            ScanResult* result, std::string* what);

}  // namespace pagefuse
