// Page hashing kernels: XXH3-64 over whole pages, a partial-page prefilter, zero detection and a
// read-only baseline. Plain C++ (no Node headers). The kernels are compiled three times, for the
// x86-64 baseline (SSE2), AVX2 and AVX-512F, and picked at runtime by what the CPU supports.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pagefuse {

struct HashKernels {
  const char* name;  // "avx512", "avx2" or "sse2" (or "scalar" off x86)
  // XXH3-64 of `len` bytes with `seed`.
  uint64_t (*hash)(const void* data, size_t len, uint64_t seed);
  // The same as hash(data, len, seed), while it pulls `next` (`len` bytes, or nullptr) into the
  // cache spread over the hashing: the page after this one, in a scan.
  uint64_t (*hashNext)(const void* data, size_t len, uint64_t seed, const void* next);
  // XXH3-64 of four 64-byte lines at fixed offsets of a page of `len` bytes (len >= 256); sets
  // *linesZero when all sampled lines are zero (the page may be a zero page).
  uint64_t (*prefilter)(const void* page, size_t len, uint64_t seed, bool* linesZero);
  // True when all `len` bytes are zero.
  bool (*isZero)(const void* data, size_t len);
  // Reads every byte once and folds them into a sum: the memory-bandwidth baseline for benches.
  uint64_t (*readSum)(const void* data, size_t len);
};

// The best kernels this CPU runs. Never selects AVX2/AVX-512 code on a CPU without it.
const HashKernels& Kernels();
// The portable kernels (SSE2 on x86-64), for tests and for comparison.
const HashKernels& BaselineKernels();
// The kernels of one instruction set ("avx512", "avx2", "sse2"), or nullptr when this CPU lacks it.
const HashKernels* KernelsFor(const char* name);

// The per-process hash key: page hashes are a content oracle, so they are keyed with a random
// secret chosen at load time and never leave the process.
uint64_t HashSeed();

}  // namespace pagefuse
