#include "core/sketch.h"

#include <algorithm>
#include <cerrno>
#include <memory>

#include "core/hash.h"
#include "core/mapping.h"
#include "core/procmem.h"

namespace pagefuse {

namespace {

// The page hash must be the same on every host (the fleet key does the keying), so it uses a fixed
// seed rather than the scan's per-process HashSeed().
constexpr uint64_t kPageSeed = 0x70616765667573ull;  // "pagefus"
constexpr uint64_t kBatchPages = 1024;              // 4 MiB per read

inline uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

inline void SipRound(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
  v0 += v1;
  v1 = Rotl(v1, 13);
  v1 ^= v0;
  v0 = Rotl(v0, 32);
  v2 += v3;
  v3 = Rotl(v3, 16);
  v3 ^= v2;
  v0 += v3;
  v3 = Rotl(v3, 21);
  v3 ^= v0;
  v2 += v1;
  v1 = Rotl(v1, 17);
  v1 ^= v2;
  v2 = Rotl(v2, 32);
}

}  // namespace

uint64_t SipHash24(const SketchKey& key, uint64_t message) {
  uint64_t v0 = key.k0 ^ 0x736f6d6570736575ull;
  uint64_t v1 = key.k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = key.k0 ^ 0x6c7967656e657261ull;
  uint64_t v3 = key.k1 ^ 0x7465646279746573ull;
  v3 ^= message;
  SipRound(v0, v1, v2, v3);
  SipRound(v0, v1, v2, v3);
  v0 ^= message;
  const uint64_t last = 8ull << 56;  // message length in the top byte, no tail bytes
  v3 ^= last;
  SipRound(v0, v1, v2, v3);
  SipRound(v0, v1, v2, v3);
  v0 ^= last;
  v2 ^= 0xff;
  for (int i = 0; i < 4; i++) SipRound(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

void SketchBytes(const unsigned char* data, uint64_t length, const SketchKey& key, uint64_t modulus,
                 std::vector<uint64_t>* sampled, SketchResult* out) {
  const HashKernels& k = Kernels();
  const uint64_t page = PageSize();
  const uint64_t mask = modulus - 1;
  const uint64_t pages = length / page;
  for (uint64_t i = 0; i < pages; i++) {
    const unsigned char* p = data + i * page;
    out->pages++;
    if (k.isZero(p, page)) {
      out->zeroPages++;
      continue;
    }
    uint64_t keyed = SipHash24(key, k.xxh3(p, page, kPageSeed));
    if ((keyed & mask) == 0) sampled->push_back(keyed);
  }
}

void FinishSketch(std::vector<uint64_t>* sampled, SketchResult* out) {
  std::sort(sampled->begin(), sampled->end());
  out->values.clear();
  out->counts.clear();
  for (size_t i = 0; i < sampled->size();) {
    size_t j = i + 1;
    while (j < sampled->size() && (*sampled)[j] == (*sampled)[i]) j++;
    out->values.push_back((*sampled)[i]);
    out->counts.push_back(static_cast<uint32_t>(j - i));
    i = j;
  }
}

int SketchProcess(const std::string& procRoot, pid_t pid, bool mergeableOnly, const SketchKey& key, uint64_t modulus,
                  SketchResult* out) {
  std::vector<AnonMapping> maps;
  int err = ReadAnonMappings(procRoot, pid, mergeableOnly, &maps);
  ResidentScan resident;
  if (err == 0) err = ReadResidentPages(procRoot, pid, maps, &resident);
  if (err != 0) return err;
  *out = SketchResult{};
  out->absentPages = resident.absentPages;
  out->zeroMappedPages = resident.zeroMappedPages;
  out->flagsKnown = resident.flagsKnown;
  const uint64_t page = PageSize();
  std::vector<uint64_t> sampled;
  std::vector<uint64_t> addresses;
  std::vector<uint64_t> lengths;
  std::vector<unsigned char> buf;
  std::vector<bool> failed;
  // Every range through /proc/<pid>/mem: never pin (and so unshare) a merged page. A batch holds
  // at most kBatchPages ranges (each at least one page).
  std::unique_ptr<bool[]> viaMem(new bool[kBatchPages]);
  std::fill(viaMem.get(), viaMem.get() + kBatchPages, true);
  auto flush = [&]() -> int {
    if (addresses.empty()) return 0;
    uint64_t total = 0;
    for (uint64_t l : lengths) total += l;
    buf.resize(total);
    int e = ReadRemote(pid, addresses.data(), lengths.data(), addresses.size(), buf.data(), &failed, viaMem.get());
    if (e != 0) return e;
    uint64_t at = 0;
    for (size_t r = 0; r < addresses.size(); r++) {
      if (failed[r]) {
        out->unreadablePages += lengths[r] / page;
      } else {
        SketchBytes(buf.data() + at, lengths[r], key, modulus, &sampled, out);
      }
      at += lengths[r];
    }
    addresses.clear();
    lengths.clear();
    return 0;
  };
  uint64_t batched = 0;
  for (const PageRun& run : resident.runs) {
    if (run.thp) out->thpPages += run.pages;
    for (uint64_t done = 0; done < run.pages;) {
      uint64_t take = std::min(run.pages - done, kBatchPages - batched);
      addresses.push_back(run.address + done * page);
      lengths.push_back(take * page);
      done += take;
      batched += take;
      if (batched == kBatchPages) {
        if (int e = flush(); e != 0) return e;
        batched = 0;
      }
    }
  }
  if (int e = flush(); e != 0) return e;
  FinishSketch(&sampled, out);
  return 0;
}

}  // namespace pagefuse
