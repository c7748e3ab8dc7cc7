// The page-hashing kernels compiled for AVX-512. Only reached through Kernels(), which checks the CPU
// first. Standard headers come before the target pragma so no shared inline code is built for AVX-512.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/hash.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>  // GCC's intrinsics carry their own target attributes

#pragma GCC push_options
#pragma GCC target("avx512f")
// GCC 12's own avx512fintrin.h trips -Wmaybe-uninitialized (its _mm512_undefined_* idiom).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define XXH_VECTOR 3 /* XXH_AVX512 */
#include "core/hash_kernels.h"
#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace pagefuse {
const HashKernels* Avx512Kernels() {
  static const HashKernels k{"avx512", KernelHash, KernelHashNext, KernelPrefilter, KernelIsZero, KernelReadSum};
  return &k;
}
}  // namespace pagefuse
#else
namespace pagefuse {
const HashKernels* Avx512Kernels() { return nullptr; }
}  // namespace pagefuse
#endif
