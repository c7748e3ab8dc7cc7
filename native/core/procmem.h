// Reading another process's anonymous memory: /proc/<pid>/smaps for the mappings, pagemap and
// kpageflags for which pages are there, process_vm_readv for their bytes. No Node headers.
// Errors are positive errno values (0 = success).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pagefuse {

struct AnonMapping {
  uint64_t start;
  uint64_t end;
  bool mergeable;  // VmFlags "mg": the kernel's KSM would scan it
  bool hugepage;   // VmFlags "hg": MADV_HUGEPAGE
};

// The private anonymous mappings of `pid` (heap, stack and anonymous mmaps), only mergeable ones
// when mergeableOnly. ESRCH when the process does not exist, EPERM when we may not look at it.
int ReadAnonMappings(const std::string& procRoot, pid_t pid, bool mergeableOnly, std::vector<AnonMapping>* out);

// A run of consecutive resident pages worth reading.
struct PageRun {
  uint64_t address;
  uint64_t pages;
  bool thp;  // inside a transparent huge page (known only with /proc/kpageflags, as root)
  // Not exclusively mapped (pagemap bit 56): a KSM page, or shared with a fork. Read through
  // /proc/<pid>/mem: process_vm_readv pins pages read-only, and the kernel unshares (copies) a
  // shared anonymous page it pins that way, undoing KSM's merge.
  bool shared = false;
};

struct ResidentScan {
  std::vector<PageRun> runs;
  uint64_t absentPages = 0;      // never touched, swapped out or otherwise not present
  uint64_t zeroMappedPages = 0;  // mapped to the kernel's shared zero page: not memory of their own
  bool flagsKnown = false;       // kpageflags was readable (root): THP and zero-page mappings are known
  uint64_t entriesRead = 0;      // pagemap entries read: the present ranges and small gaps between them
};

// Walks pagemap over the mappings and keeps the present pages. Reading pagemap first matters:
// process_vm_readv on never-touched memory maps the zero page there. Where the kernel has PAGEMAP_SCAN
// (6.7+), only the entries of present ranges are read: the cost follows the memory there, not the size
// of the mappings. ECANCELED once `cancel` (may be null) is set, looked at every 256 MiB of entries.
int ReadResidentPages(const std::string& procRoot, pid_t pid, const std::vector<AnonMapping>& maps, ResidentScan* out,
                      const std::atomic<bool>* cancel = nullptr);

// PAGEMAP_SCAN (Linux 6.7) on an open pagemap over [start, end): the present ranges, ranges closer than
// 2 MiB joined, until `maxPages` present pages (0: no limit) or the end (*walkEnd: where the walk stopped).
// ENOTTY or EINVAL where the kernel (or the file: a fixture) has no PAGEMAP_SCAN: the caller reads every entry.
int PagemapPresent(int pm, uint64_t start, uint64_t end, uint64_t maxPages, std::vector<std::pair<uint64_t, uint64_t>>* out,
                   uint64_t* walkEnd);

// Reads pages of `pid` into `dst`: `count` remote ranges (address, bytes) laid end to end in dst.
// Ranges flagged in `viaMem` (may be null) are read from /proc/<pid>/mem, which takes no pin and
// leaves shared pages shared; the others with process_vm_readv (faster).
// Ranges that cannot be read are zero-filled and flagged in `failed` (one flag per range).
// Returns 0, or ESRCH when the process is gone, EPERM when reading is refused.
int ReadRemote(pid_t pid, const uint64_t* addresses, const uint64_t* lengths, size_t count, unsigned char* dst,
               std::vector<bool>* failed, const bool* viaMem = nullptr);

}  // namespace pagefuse
