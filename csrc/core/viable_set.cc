#include "core/viable_set.h"

#include <string>

#include "core/round.h"

namespace aragog {
namespace {

// Python's floor division and modulo, for a positive divisor.
int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

int64_t FloorMod(int64_t a, int64_t b) {
  const int64_t m = a % b;
  return m < 0 ? m + b : m;
}

}  // namespace

std::vector<int64_t> NarrowViableSet(ArrayView<int64_t> viable, int64_t stride, int64_t radix,
                                     int64_t digit) {
  if (stride < 1 || radix < 1) {
    throw InvalidArgumentError("stride and radix must be at least 1, found " +
                               std::to_string(stride) + " and " + std::to_string(radix));
  }
  std::vector<int64_t> kept;
  for (const int64_t config : viable) {
    if (FloorMod(FloorDiv(config, stride), radix) == digit) kept.push_back(config);
  }
  return kept;
}

}  // namespace aragog
