#include "core/hash.h"

#include <random>

namespace pagefuse {

const HashKernels* Avx2Kernels();

const HashKernels& Kernels() {
  static const HashKernels* chosen = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
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
