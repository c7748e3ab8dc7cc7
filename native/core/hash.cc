#include "core/hash.h"

#include <cstring>
#include <random>

namespace pagefuse {

const HashKernels* Avx2Kernels();
const HashKernels* Avx512Kernels();

const HashKernels* KernelsFor(const char* name) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (std::strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx512f")) return Avx512Kernels();
  if (std::strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) return Avx2Kernels();
#endif
  if (std::strcmp(name, BaselineKernels().name) == 0) return &BaselineKernels();
  return nullptr;
}

const HashKernels& Kernels() {
  static const HashKernels* chosen = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && Avx512Kernels() != nullptr) return Avx512Kernels();
    if (__builtin_cpu_supports("avx2") && Avx2Kernels() != nullptr) return Avx2Kernels();
#endif
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
