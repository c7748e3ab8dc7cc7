// The page-hashing kernels compiled for AVX2. Only reached through Kernels(), which checks the CPU
// first. Standard headers come before the target pragma so no shared inline code is built for AVX2.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/hash.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>  // GCC's intrinsics carry their own target attributes

#pragma GCC push_options
#pragma GCC target("avx2")
#define XXH_VECTOR 2 /* XXH_AVX2 */
#include "core/hash_kernels.h"
#pragma GCC pop_options

namespace pagefuse {
const HashKernels* Avx2Kernels() {
  static const HashKernels k{"avx2", KernelHash, KernelHashNext, KernelPrefilter, KernelIsZero, KernelReadSum};
  return &k;
}
}  // namespace pagefuse
#else
namespace pagefuse {
const HashKernels* Avx2Kernels() { return nullptr; }
}  // namespace pagefuse
#endif
