#include "core/hash.h"

#include <cstdlib>
#include <cstring>
#include <random>

namespace pagefuse {

const HashKernels* Avx512VaesKernels();
const HashKernels* Avx512Kernels();
const HashKernels* Avx2VaesKernels();
const HashKernels* Avx2AesKernels();
const HashKernels* Avx2Kernels();
const HashKernels* BaselineAesKernels();

// Preferred first. With AVX-512 XXH3 leads: on an AMD EPYC with AVX-512 and VAES a whole exact scan
// is not faster with the AES hash. At AVX2 and SSE2 width the AES hash leads: there XXH3 is the
// ceiling (the same CPU with those sets forced, exact scan against the read at that width: AVX2
// 0.52-0.58 x with XXH3, 0.72-0.84 with AES; SSE2 0.37-0.55 against 0.89-0.94; docs/scan.md, Speed).
const char* const kKernelNames[] = {"avx512+xxh3", "avx512+vaes", "avx2+vaes", "avx2+aes", "avx2+xxh3",
                                    "sse2+aes",    "sse2+xxh3",   "scalar+xxh3", nullptr};

namespace {

bool Has(const char* feature) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (std::strcmp(feature, "avx512f") == 0) return __builtin_cpu_supports("avx512f");
  if (std::strcmp(feature, "avx2") == 0) return __builtin_cpu_supports("avx2");
  if (std::strcmp(feature, "aes") == 0) return __builtin_cpu_supports("aes");
  if (std::strcmp(feature, "vaes") == 0) return __builtin_cpu_supports("vaes");
#endif
  return false;
}

}  // namespace

const HashKernels* KernelsFor(const char* name) {
  const HashKernels* k = nullptr;
  if (std::strcmp(name, "avx512+vaes") == 0) k = Has("avx512f") && Has("vaes") && Has("aes") ? Avx512VaesKernels() : nullptr;
  else if (std::strcmp(name, "avx512+xxh3") == 0) k = Has("avx512f") ? Avx512Kernels() : nullptr;
  else if (std::strcmp(name, "avx2+vaes") == 0) k = Has("avx2") && Has("vaes") && Has("aes") ? Avx2VaesKernels() : nullptr;
  else if (std::strcmp(name, "avx2+aes") == 0) k = Has("avx2") && Has("aes") ? Avx2AesKernels() : nullptr;
  else if (std::strcmp(name, "avx2+xxh3") == 0) k = Has("avx2") ? Avx2Kernels() : nullptr;
  else if (std::strcmp(name, "sse2+aes") == 0) k = Has("aes") ? BaselineAesKernels() : nullptr;
  else if (std::strcmp(name, BaselineKernels().name) == 0) k = &BaselineKernels();
  return k;
}

const HashKernels& Kernels() {
  static const HashKernels* chosen = [] {
    // PAGEFUSE_HASH_KERNELS: a set name, or an instruction set ("avx2": its best set). A value this CPU
    // cannot run, or that names nothing, falls back to the best set.
    const char* want = std::getenv("PAGEFUSE_HASH_KERNELS");
    const size_t n = want == nullptr ? 0 : std::strlen(want);
    if (n > 0) {
      for (const char* const* name = kKernelNames; *name != nullptr; name++) {
        const bool named = std::strcmp(*name, want) == 0 || (std::strncmp(*name, want, n) == 0 && (*name)[n] == '+');
        const HashKernels* k = named ? KernelsFor(*name) : nullptr;
        if (k != nullptr) return k;
      }
    }
    for (const char* const* name = kKernelNames; *name != nullptr; name++) {
      if (const HashKernels* k = KernelsFor(*name)) return k;
    }
    return &BaselineKernels();
  }();
  return *chosen;
}

uint64_t HashSeed() {
  static const uint64_t seed = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }();
  return seed;
}

}  // namespace pagefuse
