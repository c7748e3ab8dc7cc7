// The AES page hash, included once per lane width (PAGEFUSE_AES_BITS 128, 256 or 512) inside a
// `#pragma GCC target` section that enables AES-NI (and VAES for 256 and 512), in a namespace the
// includer names (PAGEFUSE_AES_NS), inside an anonymous one: each copy is private to its translation unit.
// No #pragma once: one translation unit may include it for several widths.
//
// The hash: eight 128-bit lanes start from the key (the seed, spread by fixed constants); each
// 128-byte block of input is eight 16-byte words, word i folded into lane i by one AES round with the
// word as its round key (lane = aesenc(lane, word)). A short tail is zero-padded to a block. Each lane
// then takes four rounds of its own (see Finish), the lanes are folded pairwise by AES rounds, the length and the key are added, and three more rounds diffuse
// every input bit over the 128 bits before the two halves are XORed into 64. All widths compute the
// same value: a 256-bit lane is lanes 2i and 2i+1 side by side, a 512-bit lane four of them.
//
// It is not a cryptographic hash: exact mode byte-compares pages with equal hashes, so a hash needs
// spread and a per-process key, which this has at one AES round per 16 bytes (a few cycles per 128
// bytes, well under what memory delivers), where XXH3 needs several multiplies per 8 bytes.
#if !defined(PAGEFUSE_AES_BITS) || !defined(PAGEFUSE_AES_NS)
#error "define PAGEFUSE_AES_BITS and PAGEFUSE_AES_NS before including hash_aes.h"
#endif

namespace {
namespace PAGEFUSE_AES_NS {

constexpr size_t kAesBlock = 128;
constexpr size_t kAesLine = 64;
// Lane constants: the fractional part of pi (as in Blowfish's P-array), so the lanes start apart.
constexpr uint64_t kAesPi[20] = {
    0x243f6a8885a308d3ull, 0x13198a2e03707344ull, 0xa4093822299f31d0ull, 0x082efa98ec4e6c89ull,
    0x452821e638d01377ull, 0xbe5466cf34e90c6cull, 0xc0ac29b7c97c50ddull, 0x3f84d5b5b5470917ull,
    0x9216d5d98979fb1bull, 0xd1310ba698dfb5acull, 0x2ffd72dbd01adfb7ull, 0xb8e1afed6a267e96ull,
    0xba7c9045f12c7f99ull, 0x24a19947b3916cf7ull, 0x0801f2e2858efc16ull, 0x636920d871574e69ull,
    0xa458fea3f4933d7eull, 0x0d95748f728eb658ull, 0x718bcd5882154aeeull, 0x7b54a41dc25a59b5ull};

inline __m128i AesKey(uint64_t seed, int i) {
  return _mm_set_epi64x(static_cast<long long>(((seed << 32) | (seed >> 32)) ^ kAesPi[2 * i + 1]),
                        static_cast<long long>(seed ^ kAesPi[2 * i]));
}

#if PAGEFUSE_AES_BITS == 512
typedef __m512i Lane;
constexpr int kLanes = 2;
inline Lane Load(const unsigned char* p) { return _mm512_loadu_si512(p); }
inline Lane Round(Lane s, Lane k) { return _mm512_aesenc_epi128(s, k); }
inline void Start(uint64_t seed, Lane* l) {
  for (int i = 0; i < kLanes; i++) {
    l[i] = _mm512_inserti32x4(_mm512_castsi128_si512(AesKey(seed, 4 * i)), AesKey(seed, 4 * i + 1), 1);
    l[i] = _mm512_inserti32x4(l[i], AesKey(seed, 4 * i + 2), 2);
    l[i] = _mm512_inserti32x4(l[i], AesKey(seed, 4 * i + 3), 3);
  }
}
inline void Split(const Lane* l, __m128i* w) {
  for (int i = 0; i < kLanes; i++) {
    w[4 * i] = _mm512_castsi512_si128(l[i]);
    w[4 * i + 1] = _mm512_extracti32x4_epi32(l[i], 1);
    w[4 * i + 2] = _mm512_extracti32x4_epi32(l[i], 2);
    w[4 * i + 3] = _mm512_extracti32x4_epi32(l[i], 3);
  }
}
#elif PAGEFUSE_AES_BITS == 256
typedef __m256i Lane;
constexpr int kLanes = 4;
inline Lane Load(const unsigned char* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline Lane Round(Lane s, Lane k) { return _mm256_aesenc_epi128(s, k); }
inline void Start(uint64_t seed, Lane* l) {
  for (int i = 0; i < kLanes; i++) l[i] = _mm256_setr_m128i(AesKey(seed, 2 * i), AesKey(seed, 2 * i + 1));
}
inline void Split(const Lane* l, __m128i* w) {
  for (int i = 0; i < kLanes; i++) {
    w[2 * i] = _mm256_castsi256_si128(l[i]);
    w[2 * i + 1] = _mm256_extracti128_si256(l[i], 1);
  }
}
#elif PAGEFUSE_AES_BITS == 128
typedef __m128i Lane;
constexpr int kLanes = 8;
inline Lane Load(const unsigned char* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline Lane Round(Lane s, Lane k) { return _mm_aesenc_si128(s, k); }
inline void Start(uint64_t seed, Lane* l) {
  for (int i = 0; i < kLanes; i++) l[i] = AesKey(seed, i);
}
inline void Split(const Lane* l, __m128i* w) {
  for (int i = 0; i < kLanes; i++) w[i] = l[i];
}
#else
#error "PAGEFUSE_AES_BITS must be 128, 256 or 512"
#endif

constexpr size_t kLaneBytes = kAesBlock / kLanes;

inline void Block(Lane* l, const unsigned char* p) {
  for (int i = 0; i < kLanes; i++) l[i] = Round(l[i], Load(p + i * kLaneBytes));
}

// Rounds each lane takes on its own, keyed by its start value, before the lanes are combined. A
// difference in the last block reaches its lane one XOR before the end; with no rounds of its own it
// met the other lanes after a single round, and two pages one byte apart in different lanes of the
// last block (equal elsewhere) collided about once per 2^8 such pairs: one active S-box each side,
// spread by MixColumns over the same column, cancel that often. Four rounds diffuse every difference
// over the whole lane first (at least 25 active S-boxes), at 4 × 8 × 16 bytes of AES work per page.
constexpr int kFinishRounds = 4;

inline uint64_t Finish(const Lane* in, size_t len, uint64_t seed) {
  Lane l[kLanes], key[kLanes];
  Start(seed, key);
  for (int i = 0; i < kLanes; i++) l[i] = in[i];
  for (int r = 0; r < kFinishRounds; r++) {
    for (int i = 0; i < kLanes; i++) l[i] = Round(l[i], key[i]);
  }
  __m128i w[8];
  Split(l, w);
  __m128i a = _mm_aesenc_si128(w[0], w[1]);
  __m128i b = _mm_aesenc_si128(w[2], w[3]);
  __m128i c = _mm_aesenc_si128(w[4], w[5]);
  __m128i d = _mm_aesenc_si128(w[6], w[7]);
  a = _mm_aesenc_si128(a, b);
  c = _mm_aesenc_si128(c, d);
  a = _mm_aesenc_si128(a, c);
  a = _mm_xor_si128(a, _mm_set_epi64x(static_cast<long long>(len), static_cast<long long>(seed)));
  const __m128i k0 = AesKey(seed, 8), k1 = AesKey(seed, 9);
  a = _mm_aesenc_si128(a, k0);
  a = _mm_aesenc_si128(a, k1);
  a = _mm_aesenc_si128(a, k0);
  return static_cast<uint64_t>(_mm_cvtsi128_si64(a)) ^ static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(a, a)));
}

inline void Tail(Lane* l, const unsigned char* p, size_t rest) {
  if (rest == 0) return;
  alignas(64) unsigned char block[kAesBlock] = {};
  std::memcpy(block, p, rest);
  Block(l, block);
}

// The page hash of `len` bytes under `seed`.
uint64_t AesHash(const void* data, size_t len, uint64_t seed) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  Lane l[kLanes];
  Start(seed, l);
  const size_t blocks = len / kAesBlock;
  for (size_t b = 0; b < blocks; b++) Block(l, p + b * kAesBlock);
  Tail(l, p + blocks * kAesBlock, len % kAesBlock);
  return Finish(l, len, seed);
}

// The same hash while `next` (len bytes, or nullptr) is pulled into the cache, one line of it per
// 64 bytes hashed: the hardware prefetcher stops at page boundaries.
uint64_t AesHashNext(const void* data, size_t len, uint64_t seed, const void* next) {
  if (next == nullptr) return AesHash(data, len, seed);
  const unsigned char* p = static_cast<const unsigned char*>(data);
  const char* ahead = static_cast<const char*>(next);
  Lane l[kLanes];
  Start(seed, l);
  const size_t blocks = len / kAesBlock;
  for (size_t b = 0; b < blocks; b++) {
    __builtin_prefetch(ahead + b * kAesBlock);
    __builtin_prefetch(ahead + b * kAesBlock + kAesLine);
    Block(l, p + b * kAesBlock);
  }
  for (size_t o = blocks * kAesBlock; o < len; o += kAesLine) __builtin_prefetch(ahead + o);
  Tail(l, p + blocks * kAesBlock, len % kAesBlock);
  return Finish(l, len, seed);
}

}  // namespace PAGEFUSE_AES_NS
}  // namespace
