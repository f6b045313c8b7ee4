// Bitsets over 64-bit words: the surviving configurations of a request, by position.
#ifndef ARAGOG_CORE_BITSET_H_
#define ARAGOG_CORE_BITSET_H_

#include <cstdint>

namespace aragog {

// Number of positions set in both `a` and `b` (num_words words each).
int64_t CountCommonBits(const uint64_t* a, const uint64_t* b, int64_t num_words);

// Largest slot MarkSlots accepts: slots are stored in one signed byte per position.
inline constexpr int64_t kMaxByteSlot = 127;

// Groups positions by slot. `slots` holds one byte per position, num_words * 64 of them: a
// slot in [0, num_slots) or -1 (no slot; the padding past the last position must be -1).
// Writes, for every slot s, counts[s] = the number of positions with slot s and, unless
// `masks` is null, masks[s * num_words + w] = the bitset of those positions in word w.
void MarkSlots(const int8_t* slots, int64_t num_words, int64_t num_slots, uint64_t* masks,
               int64_t* counts);

}  // namespace aragog

#endif  // ARAGOG_CORE_BITSET_H_
