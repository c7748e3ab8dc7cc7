// Page hashing kernels: a keyed hash of whole pages, a partial-page prefilter, zero detection and the
// read-only baseline that benches compare against. Plain C++ (no Node headers). The kernels are
// compiled for the x86-64 baseline (SSE2), AVX2 and AVX-512F, each with XXH3-64 or an AES page hash,
// and picked at runtime by what the CPU supports.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pagefuse {

struct HashKernels {
  // The instruction set and the page hash: "avx512+vaes", "avx512", "avx2+vaes", "avx2+aes", "avx2",
  // "sse2+aes", "sse2" ("scalar" off x86). A set without "+" hashes pages with XXH3-64.
  const char* name;
  // The width of the loads, for reports: "avx512", "avx2", "sse2" or "scalar".
  const char* isa;
  // The page hash of `len` bytes under `seed`: XXH3-64, or the AES hash (hash_aes.h). Every set with
  // the same page hash returns the same value.
  uint64_t (*hash)(const void* data, size_t len, uint64_t seed);
  // The same as hash(data, len, seed), while it pulls `next` (`len` bytes, or nullptr) into the
  // cache spread over the hashing: the page after this one, in a scan.
  uint64_t (*hashNext)(const void* data, size_t len, uint64_t seed, const void* next);
  // XXH3-64 of `len` bytes with `seed` in every set: the same value on every host (fleet sketches).
  uint64_t (*xxh3)(const void* data, size_t len, uint64_t seed);
  // XXH3-64 of four 64-byte lines at fixed offsets of a page of `len` bytes (len >= 256); sets
  // *linesZero when all sampled lines are zero (the page may be a zero page).
  uint64_t (*prefilter)(const void* page, size_t len, uint64_t seed, bool* linesZero);
  // True when all `len` bytes are zero.
  bool (*isZero)(const void* data, size_t len);
  // Reads every byte once with the widest loads of the set, four per stream and step, from `streams`
  // (1, 2, 4 or 8) equal parts of the memory at once, and folds the 64-bit words into a sum: the
  // memory-bandwidth baseline for benches. Bytes after the last whole word are not read.
  uint64_t (*readSum)(const void* data, size_t len, int streams);
};

// The kernels scans use: the first set of kKernelNames this CPU runs (XXH3 on AVX-512, else the AES
// hash where the CPU has AES, else XXH3), or the one
// PAGEFUSE_HASH_KERNELS names (a set name, or an instruction set such as "avx2"
// for the best set of that width) when this CPU runs it. Never selects code this CPU lacks.
const HashKernels& Kernels();
// The portable XXH3 kernels (SSE2 on x86-64), for tests and for comparison.
const HashKernels& BaselineKernels();
// The kernels of one set (a name as above), or nullptr when this CPU lacks it.
const HashKernels* KernelsFor(const char* name);
// Every set name, preferred first, nullptr-terminated.
extern const char* const kKernelNames[];

// The per-process hash key: page hashes are a content oracle, so they are keyed with a random
// secret chosen at load time and never leave the process.
uint64_t HashSeed();

}  // namespace pagefuse
