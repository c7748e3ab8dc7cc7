// Keyed content sketches for fleet placement: a hash-mod-M sample of a process's (or a buffer's)
// page contents. Each page is hashed (XXH3-64, fixed seed, so equal pages hash equally on every
// host), the hash is then keyed with SipHash-2-4 under the fleet key, and the page is in the sample
// when the keyed value is 0 modulo M. Only keyed values leave this file: the unkeyed page hashes
// are content oracles and stay on the stack. Zero pages are counted, never sampled. No Node headers.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pagefuse {

struct SketchKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

// SipHash-2-4 (Aumasson and Bernstein) of one 8-byte little-endian message.
uint64_t SipHash24(const SketchKey& key, uint64_t message);

struct SketchResult {
  std::vector<uint64_t> values;  // distinct sampled keyed values, ascending
  std::vector<uint32_t> counts;  // how many pages carry each value (same order)
  uint64_t pages = 0;            // pages read (zero pages included)
  uint64_t zeroPages = 0;        // zero-filled pages: counted, never sampled
  uint64_t thpPages = 0;         // pages inside transparent huge pages (known with flagsKnown)
  uint64_t absentPages = 0;      // process: not resident (left out, as ksmd would)
  uint64_t zeroMappedPages = 0;  // process: mapped to the shared zero page
  uint64_t unreadablePages = 0;  // process: resident when listed, unreadable when read
  bool flagsKnown = false;       // /proc/kpageflags was readable (root): thpPages is meaningful
};

// Adds the pages of [data, data + length) (whole pages only) to `out`'s tallies and sample;
// call FinishSketch once afterwards.
void SketchBytes(const unsigned char* data, uint64_t length, const SketchKey& key, uint64_t modulus,
                 std::vector<uint64_t>* sampled, SketchResult* out);

// Sorts the sampled values into out->values / out->counts.
void FinishSketch(std::vector<uint64_t>* sampled, SketchResult* out);

// Sketches the private anonymous memory of `pid` (mergeable mappings only when mergeableOnly).
// Present pages only (pagemap), read through /proc/<pid>/mem, which takes no pin and so leaves KSM
// pages merged (process_vm_readv would unshare them). Returns 0, ESRCH, EPERM or another errno.
int SketchProcess(const std::string& procRoot, pid_t pid, bool mergeableOnly, const SketchKey& key, uint64_t modulus,
                  SketchResult* out);

}  // namespace pagefuse
