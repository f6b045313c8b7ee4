#include "core/bitset.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace aragog {
namespace {

// NOTE: the build targets baseline x86-64, whose popcount is a libgcc call. Where the
// toolchain can, these functions are also compiled for CPUs with POPCNT and the loader
// picks the clone the machine supports (GNU ifunc); elsewhere they are compiled once.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define ARAGOG_POPCOUNT_CLONES __attribute__((target_clones("popcnt", "default")))
#else
#define ARAGOG_POPCOUNT_CLONES
#endif

// Bit j of the result is set when slots[j] == slot, for j < 64.
inline uint64_t MatchWord(const int8_t* slots, int8_t slot) {
#if defined(__SSE2__)
  const __m128i key = _mm_set1_epi8(slot);
  uint64_t bits = 0;
  for (int k = 0; k < 4; ++k) {
    const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(slots + 16 * k));
    const uint64_t match = static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, key)));
    bits |= match << (16 * k);
  }
  return bits;
#else
  uint64_t bits = 0;
  for (int j = 0; j < 64; ++j) bits |= static_cast<uint64_t>(slots[j] == slot) << j;
  return bits;
#endif
}

}  // namespace

ARAGOG_POPCOUNT_CLONES
int64_t CountCommonBits(const uint64_t* a, const uint64_t* b, int64_t num_words) {
  int64_t count = 0;
  for (int64_t w = 0; w < num_words; ++w) count += __builtin_popcountll(a[w] & b[w]);
  return count;
}

ARAGOG_POPCOUNT_CLONES
void MarkSlots(const int8_t* slots, int64_t num_words, int64_t num_slots, uint64_t* masks,
               int64_t* counts) {
  for (int64_t s = 0; s < num_slots; ++s) {
    int64_t count = 0;
    for (int64_t w = 0; w < num_words; ++w) {
      const uint64_t bits = MatchWord(slots + 64 * w, static_cast<int8_t>(s));
      if (masks != nullptr) masks[s * num_words + w] = bits;
      count += __builtin_popcountll(bits);
    }
    counts[s] = count;
  }
}

}  // namespace aragog
