// The `aragog._core` extension module: one Register* call per binding area.
#include <pybind11/pybind11.h>

#include "register.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "aragog's compiled scheduling core. Use it through aragog.scheduling.round.";
  aragog::RegisterRound(m);
}
