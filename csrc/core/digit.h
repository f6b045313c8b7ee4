// One agent's digit of a configuration id in the workflow's mixed-radix space.
#ifndef ARAGOG_CORE_DIGIT_H_
#define ARAGOG_CORE_DIGIT_H_

#include <cstdint>

namespace aragog {

#if defined(__SIZEOF_INT128__)
__extension__ typedef unsigned __int128 Uint128;
#endif

// One agent's stride and radix (both at least 1) with their 64-bit reciprocals. Computing a
// reciprocal costs a division, so a round computes them once per agent, not once per item.
struct DigitDivisors {
  uint64_t stride = 1;
  uint64_t radix = 1;
  uint64_t stride_reciprocal = 0;
  uint64_t radix_reciprocal = 0;

  DigitDivisors() = default;
  DigitDivisors(uint64_t stride_value, uint64_t radix_value)
      : stride(stride_value),
        radix(radix_value),
        // For a divisor of 1 the reciprocal wraps to 0: right for the remainder (always 0),
        // wrong for the quotient, so a stride of 1 skips the division instead.
        stride_reciprocal(UINT64_MAX / stride_value + 1),
        radix_reciprocal(UINT64_MAX / radix_value + 1) {}
};

// Reads (config / stride) % radix for non-negative configuration ids.
//
// A round reads one digit of every viable configuration of every item, so the two integer
// divisions dominate its set-up. When every id, the stride and the radix fit in 32 bits,
// both are done by multiplying with the precomputed 64-bit reciprocals (Lemire, Kaser and
// Kurz, "Faster remainder by direct computation", 2019), exact for all 32-bit operands.
// Otherwise it divides. A stride past 2^64 saturates to UINT64_MAX: it still exceeds every
// int64 id, so the digit is 0, as with the exact stride.
class DigitReader {
 public:
  // `max_config` bounds the ids that will be read.
  DigitReader(const DigitDivisors& divisors, int64_t max_config) : d_(divisors) {
#if defined(__SIZEOF_INT128__)
    constexpr uint64_t kLimit = uint64_t{1} << 32;
    fast_ = max_config >= 0 && static_cast<uint64_t>(max_config) < kLimit && d_.stride < kLimit &&
            d_.radix < kLimit;
#else
    (void)max_config;
#endif
  }

  uint64_t operator()(int64_t config) const {
    const uint64_t id = static_cast<uint64_t>(config);
#if defined(__SIZEOF_INT128__)
    if (fast_) {
      const uint64_t quotient =
          d_.stride == 1
              ? id
              : static_cast<uint64_t>((static_cast<Uint128>(d_.stride_reciprocal) * id) >> 64);
      const uint64_t low = d_.radix_reciprocal * quotient;
      return static_cast<uint64_t>((static_cast<Uint128>(low) * d_.radix) >> 64);
    }
#endif
    return (id / d_.stride) % d_.radix;
  }

 private:
  DigitDivisors d_;
  bool fast_ = false;
};

}  // namespace aragog

#endif  // ARAGOG_CORE_DIGIT_H_
