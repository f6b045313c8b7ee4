// Registration of each binding area into the `aragog._core` module.
#ifndef ARAGOG_REGISTER_H_
#define ARAGOG_REGISTER_H_

#include <pybind11/pybind11.h>

namespace aragog {

// schedule_round and narrow_viable_set (register_round.cpp).
void RegisterRound(pybind11::module_& m);

}  // namespace aragog

#endif  // ARAGOG_REGISTER_H_
