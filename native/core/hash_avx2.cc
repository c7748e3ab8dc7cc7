// The page-hashing kernels compiled for AVX2: XXH3, the AES hash on 256-bit VAES, and on 128-bit
// AES-NI for AVX2 CPUs without VAES. Only reached through Kernels()/KernelsFor(), which check the CPU
// first. Standard headers come before the target pragmas so no shared inline code is built for AVX2.
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

#pragma GCC push_options
#pragma GCC target("avx2,vaes,aes")
#define PAGEFUSE_AES_BITS 256
#define PAGEFUSE_AES_NS aes256
#include "core/hash_aes.h"
#undef PAGEFUSE_AES_BITS
#undef PAGEFUSE_AES_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,aes")
#define PAGEFUSE_AES_BITS 128
#define PAGEFUSE_AES_NS aes128
#include "core/hash_aes.h"
#pragma GCC pop_options

namespace pagefuse {
const HashKernels* Avx2Kernels() {
  static const HashKernels k{"avx2+xxh3", "avx2", KernelHash, KernelHashNext, KernelHash, KernelPrefilter, KernelIsZero, KernelReadSum};
  return &k;
}
const HashKernels* Avx2VaesKernels() {
  static const HashKernels k{"avx2+vaes", "avx2", aes256::AesHash, aes256::AesHashNext, KernelHash, KernelPrefilter, KernelIsZero, KernelReadSum};
  return &k;
}
const HashKernels* Avx2AesKernels() {
  static const HashKernels k{"avx2+aes", "avx2", aes128::AesHash, aes128::AesHashNext, KernelHash, KernelPrefilter, KernelIsZero, KernelReadSum};
  return &k;
}
}  // namespace pagefuse
#else
namespace pagefuse {
const HashKernels* Avx2Kernels() { return nullptr; }
const HashKernels* Avx2VaesKernels() { return nullptr; }
const HashKernels* Avx2AesKernels() { return nullptr; }
}  // namespace pagefuse
#endif
