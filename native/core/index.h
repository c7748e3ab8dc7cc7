// The content index: open addressing over 8-byte slots, shared lock-free by the hashing threads.
// A slot holds the high 32 bits of a content's hash and (index + 1) of the first page seen with it;
// the low 31 bits live in a per-page array (`lows`, 4 bytes per page, also the page checksum kept
// for volatility), so a scan costs 4 + 8 × 1.25 = 14 bytes per page. Bit 31 of a first page's
// `lows` entry says that a second copy was found. Plain C++, no Node headers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/zeroed.h"

namespace pagefuse {

constexpr uint32_t kLowMask = 0x7fffffffu;
constexpr uint32_t kDupBit = 0x80000000u;

// PREFETCHW: CPUID 0x80000001 ECX bit 8 (AMD since K8, Intel since Broadwell).
bool CpuHasPrefetchW();
inline const bool kPrefetchW = CpuHasPrefetchW();

inline void PrefetchForWrite(const void* p) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (kPrefetchW) {
    asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
    return;
  }
#endif
  __builtin_prefetch(p, 1);
}

class ContentIndex {
 public:
  // Room for `contents` distinct contents at a load of at most 0.8. `lows` (one entry per page,
  // owned by the caller) completes the key; without it the key is the high 32 bits only and every
  // match must be confirmed by the caller. `targets` > 1 keeps a bitmask of targets per content;
  // `counts` keeps a count of extra copies per content.
  // `shared`: several threads insert at once (atomic read-modify-writes); else one thread does.
  ContentIndex(uint64_t contents, uint32_t* lows, uint32_t targets, bool counts, bool shared = true);
  ContentIndex(const ContentIndex&) = delete;
  ContentIndex& operator=(const ContentIndex&) = delete;

  static constexpr uint64_t kFull = ~0ull;  // Outcome::first when every slot is taken

  struct Outcome {
    bool inserted;        // a new content: `page` is now its first page
    uint64_t first;       // the content's first page (== page when inserted)
    uint64_t slot;
    bool newForTarget;    // the first page of this content within `target` (counted by one thread only)
    bool becameDuplicate; // this page made the content duplicated (second copy)
  };

  // Finds the content with `hash` whose first page `same(first)` confirms (equal bytes), or inserts
  // `page` as a new content. Each rejected candidate adds one to *collisions.
  template <class Same>
  Outcome Insert(uint64_t hash, uint64_t page, uint32_t target, Same&& same, uint64_t* collisions);

  // Starts loading the slot a hash probes first, so a batch of inserts overlaps its cache misses. Shared
  // by several threads, for writing (PREFETCHW) where the CPU has it: a plain prefetch (what
  // __builtin_prefetch(p, 1) compiles to for the x86-64 baseline) fetches the line shared, and the
  // insert's compare-exchange then waits for it to be taken from the other thread's cache once more
  // (docs/scan.md, Speed, tenth session).
  void Prefetch(uint64_t hash) const {
    if (shared_) PrefetchForWrite(&slots_[Start(hash)]);
    else __builtin_prefetch(&slots_[Start(hash)], 1);
  }

  uint64_t capacity() const { return capacity_; }
  size_t bytes() const;
  // 0 for an empty slot, else the first page + 1.
  uint64_t Ref(uint64_t slot) const { return slots_[slot].load(std::memory_order_relaxed) & 0xffffffffu; }
  // Copies beyond the first (kept only with `counts`).
  uint32_t Extra(uint64_t slot) const { return counts_ ? counts_[slot].load(std::memory_order_relaxed) : 0; }
  const std::atomic<uint64_t>* Mask(uint64_t slot) const { return masks_ ? &masks_[slot * words_] : nullptr; }
  uint32_t maskWords() const { return words_; }

 private:
  uint64_t Start(uint64_t hash) const;
  uint64_t OrBits(std::atomic<uint64_t>& word, uint64_t bits) {
    if (shared_) return word.fetch_or(bits, std::memory_order_relaxed);
    uint64_t before = word.load(std::memory_order_relaxed);
    word.store(before | bits, std::memory_order_relaxed);
    return before;
  }

  uint64_t capacity_;
  uint32_t* lows_;
  uint32_t words_;
  bool shared_;
  ZeroedArray<std::atomic<uint64_t>> slots_;
  ZeroedArray<std::atomic<uint64_t>> masks_;
  ZeroedArray<std::atomic<uint32_t>> counts_;
};

inline uint64_t ContentIndex::Start(uint64_t hash) const {
  // Mixed first (a test-only narrow hash has few distinct values), then mapped onto [0, capacity)
  // by a multiply, so the capacity need not be a power of two.
  uint64_t x = hash ^ (hash >> 33);
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint64_t>((static_cast<unsigned __int128>(x) * capacity_) >> 64);
}

template <class Same>
ContentIndex::Outcome ContentIndex::Insert(uint64_t hash, uint64_t page, uint32_t target, Same&& same,
                                           uint64_t* collisions) {
  const uint32_t tag = static_cast<uint32_t>(hash >> 32);
  const uint32_t low = static_cast<uint32_t>(hash) & kLowMask;
  if (lows_ != nullptr) __atomic_store_n(&lows_[page], low, __ATOMIC_RELAXED);
  const uint64_t mine = (static_cast<uint64_t>(tag) << 32) | (page + 1);
  uint64_t pos = Start(hash);
  for (uint64_t probes = 0;; probes++) {
    if (probes == capacity_) return Outcome{false, kFull, pos, false, false};
    uint64_t s = slots_[pos].load(std::memory_order_acquire);
    if (s == 0) {
      // Publishing the slot (release) also publishes lows_[page] written above. One thread alone
      // needs no locked instruction (a locked compare-exchange per page costs about 10 % here).
      bool claimed = true;
      if (shared_) {
        claimed = slots_[pos].compare_exchange_strong(s, mine, std::memory_order_acq_rel, std::memory_order_acquire);
      } else {
        slots_[pos].store(mine, std::memory_order_relaxed);
      }
      if (claimed) {
        // Another thread may have matched this content (and set the target's bit) between the claim
        // and here: whoever sets the bit first counts the content for the target, once.
        bool fresh = true;
        if (masks_) {
          const uint64_t bit = 1ull << (target % 64);
          fresh = !(OrBits(masks_[pos * words_ + target / 64], bit) & bit);
        }
        return Outcome{true, page, pos, fresh, false};
      }
    }
    if (static_cast<uint32_t>(s >> 32) == tag) {
      uint64_t first = (s & 0xffffffffu) - 1;
      bool keyMatch = lows_ == nullptr || (__atomic_load_n(&lows_[first], __ATOMIC_RELAXED) & kLowMask) == low;
      if (keyMatch) {
        if (same(first)) {
          Outcome o{false, first, pos, false, false};
          if (masks_) {
            uint64_t bit = 1ull << (target % 64);
            o.newForTarget = !(OrBits(masks_[pos * words_ + target / 64], bit) & bit);
          }
          if (counts_) {
            uint32_t before = counts_[pos].load(std::memory_order_relaxed);
            if (shared_) before = counts_[pos].fetch_add(1, std::memory_order_relaxed);
            else counts_[pos].store(before + 1, std::memory_order_relaxed);
            o.becameDuplicate = before == 0;
          } else {
            uint32_t before = __atomic_load_n(&lows_[first], __ATOMIC_RELAXED);
            if (!(before & kDupBit)) {
              if (shared_) before = __atomic_fetch_or(&lows_[first], kDupBit, __ATOMIC_RELAXED);
              else __atomic_store_n(&lows_[first], before | kDupBit, __ATOMIC_RELAXED);
            }
            o.becameDuplicate = !(before & kDupBit);
          }
          return o;
        }
        (*collisions)++;
      }
    }
    if (++pos == capacity_) pos = 0;
  }
}

}  // namespace pagefuse
