// Viable sets: the configurations a request may still finish with.
#ifndef ARAGOG_CORE_VIABLE_SET_H_
#define ARAGOG_CORE_VIABLE_SET_H_

#include <cstdint>
#include <vector>

#include "core/array_view.h"

namespace aragog {

// The configurations of `viable` whose digit at (`stride`, `radix`) equals `digit`, in their
// order: what a request keeps once that stage is dispatched to that model. The digit is
// floor(config / stride) mod radix, as numpy computes it, so negative ids behave as in
// reference.narrow_viable_set. Throws InvalidArgumentError when stride or radix is below 1.
std::vector<int64_t> NarrowViableSet(ArrayView<int64_t> viable, int64_t stride, int64_t radix,
                                     int64_t digit);

}  // namespace aragog

#endif  // ARAGOG_CORE_VIABLE_SET_H_
