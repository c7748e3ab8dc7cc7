// The page-hashing kernels compiled for AVX-512: XXH3 and the AES hash on 512-bit VAES. Only reached
// through Kernels()/KernelsFor(), which check the CPU first. Standard headers come before the target
// pragmas so no shared inline code is built for AVX-512.
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

#pragma GCC push_options
#pragma GCC target("avx512f,vaes,aes")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // _mm512_extracti32x4_epi32, the same idiom
#define PAGEFUSE_AES_BITS 512
#define PAGEFUSE_AES_NS aes512
#include "core/hash_aes.h"
#pragma GCC diagnostic pop
#pragma GCC pop_options

namespace pagefuse {
const HashKernels* Avx512Kernels() {
  static const HashKernels k{"avx512+xxh3", "avx512", KernelHash, KernelHashNext, KernelHash, KernelPrefilter, KernelIsZero, KernelReadSum};
  return &k;
}
const HashKernels* Avx512VaesKernels() {
  static const HashKernels k{"avx512+vaes", "avx512", aes512::AesHash, aes512::AesHashNext, KernelHash, KernelPrefilter, KernelIsZero, KernelReadSum};
  return &k;
}
}  // namespace pagefuse
#else
namespace pagefuse {
const HashKernels* Avx512Kernels() { return nullptr; }
const HashKernels* Avx512VaesKernels() { return nullptr; }
}  // namespace pagefuse
#endif
