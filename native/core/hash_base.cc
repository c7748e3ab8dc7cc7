// The page-hashing kernels for the x86-64 baseline (SSE2), or plain C++ elsewhere.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/hash.h"
#include "core/hash_kernels.h"

namespace pagefuse {

const HashKernels& BaselineKernels() {
#if defined(__x86_64__)
  static const HashKernels k{"sse2", KernelHash, KernelHashNext, KernelPrefilter, KernelIsZero, KernelReadSum};
#else
  static const HashKernels k{"scalar", KernelHash, KernelHashNext, KernelPrefilter, KernelIsZero, KernelReadSum};
#endif
  return k;
}

}  // namespace pagefuse
