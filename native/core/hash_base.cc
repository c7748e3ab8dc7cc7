// The page-hashing kernels for the x86-64 baseline (SSE2), XXH3 and the AES hash on AES-NI, or plain
// C++ XXH3 elsewhere.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/hash.h"
#include "core/hash_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>  // GCC's intrinsics carry their own target attributes

#pragma GCC push_options
#pragma GCC target("aes")
#define PAGEFUSE_AES_BITS 128
#define PAGEFUSE_AES_NS aes128
#include "core/hash_aes.h"
#pragma GCC pop_options
#endif

namespace pagefuse {

const HashKernels& BaselineKernels() {
#if defined(__x86_64__)
  static const HashKernels k{"sse2+xxh3", "sse2", KernelHash, KernelHashNext, KernelHash, KernelPrefilter, KernelIsZero, KernelReadSum};
#else
  static const HashKernels k{"scalar+xxh3", "scalar", KernelHash, KernelHashNext, KernelHash, KernelPrefilter, KernelIsZero, KernelReadSum};
#endif
  return k;
}

// Reached only on a CPU with AES-NI (KernelsFor checks).
const HashKernels* BaselineAesKernels() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const HashKernels k{"sse2+aes", "sse2", aes128::AesHash, aes128::AesHashNext, KernelHash, KernelPrefilter, KernelIsZero, KernelReadSum};
  return &k;
#else
  return nullptr;
#endif
}

}  // namespace pagefuse
