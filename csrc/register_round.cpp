// Bindings of one scheduling round and of viable-set narrowing.
//
// Thin adapters: they check that every array has the documented dtype, is 1-D, C-contiguous
// and aligned (never casting or copying), view it in place, release the GIL and call the
// core. The core's InvalidArgumentError (a std::invalid_argument) becomes ValueError.
#include <Python.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/round.h"
#include "core/viable_set.h"
#include "register.h"

namespace aragog {
namespace py = pybind11;
namespace {

// Narrowing a short viable set is sub-microsecond; releasing the GIL would cost as much.
constexpr int64_t kMinSizeToReleaseGil = 1 << 14;

template <typename T>
const char* DtypeName();
template <>
const char* DtypeName<int32_t>() {
  return "int32";
}
template <>
const char* DtypeName<int64_t>() {
  return "int64";
}
template <>
const char* DtypeName<double>() {
  return "float64";
}

std::string TypeName(const py::handle& object) { return Py_TYPE(object.ptr())->tp_name; }

[[noreturn]] void FailArray(const char* name, const char* dtype, const std::string& found) {
  throw py::value_error(std::string(name) + " must be a 1-D C-contiguous numpy array of " + dtype +
                        ", found " + found);
}

// Views `object` as a 1-D array of T without copying; ValueError naming `name` otherwise.
template <typename T>
ArrayView<T> ViewArray(const py::handle& object, const char* name) {
  if (!py::isinstance<py::array>(object)) FailArray(name, DtypeName<T>(), TypeName(object));
  const auto array = py::reinterpret_borrow<py::array>(object);
  if (!py::isinstance<py::array_t<T>>(object)) {
    FailArray(name, DtypeName<T>(), "dtype " + py::str(array.dtype()).cast<std::string>());
  }
  if (array.ndim() != 1) {
    FailArray(name, DtypeName<T>(), std::to_string(array.ndim()) + "-D array");
  }
  const int flags = array.flags();
  if (!(flags & py::array::c_style) || !(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
    FailArray(name, DtypeName<T>(), "a non-contiguous or unaligned array");
  }
  return ArrayView<T>(static_cast<const T*>(array.data()), array.shape(0));
}

// An integer argument (a Python int or anything with __index__, such as a numpy integer).
// Past int64, ValueError, or the largest int64 when `saturate` says that means the same.
int64_t ToInt64(const py::handle& object, const char* name, bool saturate = false) {
  const auto index = py::reinterpret_steal<py::object>(PyNumber_Index(object.ptr()));
  if (!index) {
    PyErr_Clear();
    throw py::value_error(std::string(name) + " must be an integer, found " + TypeName(object));
  }
  int overflow = 0;
  const long long value = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow > 0 && saturate) return std::numeric_limits<int64_t>::max();
  if (overflow != 0) {
    throw py::value_error(std::string(name) + " must fit in 64 bits, found " +
                          py::str(index).cast<std::string>());
  }
  return value;
}

template <typename T>
py::array_t<T> ToNumpy(const std::vector<T>& values) {
  py::array_t<T> array(static_cast<py::ssize_t>(values.size()));
  std::copy(values.begin(), values.end(), array.mutable_data());
  return array;
}

py::tuple ScheduleRoundBinding(const py::object& agent_offsets, const py::object& candidate_offsets,
                               const py::object& candidate_models,
                               const py::object& request_workflow, const py::object& viable_offsets,
                               const py::object& viable_configs, const py::object& item_request,
                               const py::object& item_agent, const py::object& item_depth,
                               const py::object& engine_model, const py::object& engine_free_slots,
                               const py::object& engine_load, const py::object& curve_offsets,
                               const py::object& curve_load, const py::object& curve_throughput,
                               const py::object& beam_width) {
  // Views of the arguments, taken with the GIL held. The arguments stay referenced by the
  // call, so the buffers outlive the search.
  RoundInput input;
  input.agent_offsets = ViewArray<int32_t>(agent_offsets, "agent_offsets");
  input.candidate_offsets = ViewArray<int32_t>(candidate_offsets, "candidate_offsets");
  input.candidate_models = ViewArray<int32_t>(candidate_models, "candidate_models");
  input.request_workflow = ViewArray<int32_t>(request_workflow, "request_workflow");
  input.viable_offsets = ViewArray<int64_t>(viable_offsets, "viable_offsets");
  input.viable_configs = ViewArray<int64_t>(viable_configs, "viable_configs");
  input.item_request = ViewArray<int32_t>(item_request, "item_request");
  input.item_agent = ViewArray<int32_t>(item_agent, "item_agent");
  input.item_depth = ViewArray<int32_t>(item_depth, "item_depth");
  input.engine_model = ViewArray<int32_t>(engine_model, "engine_model");
  input.engine_free_slots = ViewArray<int32_t>(engine_free_slots, "engine_free_slots");
  input.engine_load = ViewArray<int32_t>(engine_load, "engine_load");
  input.curve_offsets = ViewArray<int32_t>(curve_offsets, "curve_offsets");
  input.curve_load = ViewArray<double>(curve_load, "curve_load");
  input.curve_throughput = ViewArray<double>(curve_throughput, "curve_throughput");
  // A width past int64 keeps every candidate, exactly as the largest int64 does.
  input.beam_width = ToInt64(beam_width, "beam_width", /*saturate=*/true);

  // The search, without the GIL.
  RoundResult result;
  {
    py::gil_scoped_release release;
    result = ScheduleRound(input);
  }
  return py::make_tuple(ToNumpy(result.item_engine), result.utilization_gain, result.flexibility);
}

py::array_t<int64_t> NarrowViableSetBinding(const py::object& viable, const py::object& stride,
                                            const py::object& radix, const py::object& digit) {
  const ArrayView<int64_t> configs = ViewArray<int64_t>(viable, "viable");
  const int64_t stride_value = ToInt64(stride, "stride");
  const int64_t radix_value = ToInt64(radix, "radix");
  const int64_t digit_value = ToInt64(digit, "digit");
  std::vector<int64_t> kept;
  if (configs.size() >= kMinSizeToReleaseGil) {
    py::gil_scoped_release release;
    kept = NarrowViableSet(configs, stride_value, radix_value, digit_value);
  } else {
    kept = NarrowViableSet(configs, stride_value, radix_value, digit_value);
  }
  return ToNumpy(kept);
}

constexpr const char* kScheduleRoundDoc = R"doc(
Run one scheduling round and return its best assignment.

The arguments are the fields of aragog.scheduling.round.RoundInput, in that order; see its
docstring for their meaning. Arrays must be 1-D, C-contiguous numpy arrays of exactly the
documented dtype (no casting is done): int32 for agent_offsets, candidate_offsets,
candidate_models, request_workflow, item_request, item_agent, item_depth, engine_model,
engine_free_slots, engine_load and curve_offsets; int64 for viable_offsets and
viable_configs; float64 for curve_load and curve_throughput. beam_width is an integer >= 1.
The arrays are read in place with the GIL released: do not modify them from another thread
during the call.

Returns:
    (item_engine, utilization_gain, flexibility): item_engine is an int32 array, in the
    input's item order, of the engine each item goes to or -1 when it waits; U and F of
    the chosen assignment. Bit-identical to aragog.scheduling.reference.schedule_round.

Raises:
    ValueError: an argument has the wrong type, dtype or shape, or the arrays break the
        round's contract (every condition of reference.validate); the message names it.
)doc";

constexpr const char* kNarrowViableSetDoc = R"doc(
Keep the configurations of a viable set whose digit is ``digit``.

A configuration's digit at an agent is (config // stride) % radix, as numpy computes it.
What a request keeps once that agent's stage is dispatched to the model at that digit.

Args:
    viable: 1-D C-contiguous int64 array of configuration ids.
    stride: the agent's place value, >= 1.
    radix: the agent's number of candidate models, >= 1.
    digit: the candidate's position in the agent's list.

Returns:
    A new int64 array: the kept ids, in their order. The same as
    aragog.scheduling.reference.narrow_viable_set.

Raises:
    ValueError: viable is not a 1-D C-contiguous int64 array, an integer argument does not
        fit in 64 bits, or stride or radix is below 1.
)doc";

}  // namespace

void RegisterRound(py::module_& m) {
  m.def("schedule_round", &ScheduleRoundBinding, py::arg("agent_offsets"),
        py::arg("candidate_offsets"), py::arg("candidate_models"), py::arg("request_workflow"),
        py::arg("viable_offsets"), py::arg("viable_configs"), py::arg("item_request"),
        py::arg("item_agent"), py::arg("item_depth"), py::arg("engine_model"),
        py::arg("engine_free_slots"), py::arg("engine_load"), py::arg("curve_offsets"),
        py::arg("curve_load"), py::arg("curve_throughput"), py::arg("beam_width"),
        kScheduleRoundDoc);
  m.def("narrow_viable_set", &NarrowViableSetBinding, py::arg("viable"), py::arg("stride"),
        py::arg("radix"), py::arg("digit"), kNarrowViableSetDoc);
}

}  // namespace aragog
