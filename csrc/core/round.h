// One scheduling round: the compiled twin of aragog/scheduling/reference.py.
//
// The contract (the meaning of every array, the order of items, the ranking) is written out
// in aragog/scheduling/round.py; the pure-Python reference is the specification, and the
// property-based tests hold this core bit-identical to it.
#ifndef ARAGOG_CORE_ROUND_H_
#define ARAGOG_CORE_ROUND_H_

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "core/array_view.h"

namespace aragog {

// Largest magnitude a curve's throughput may have. Far above any real engine (tokens per
// second), and far enough below DBL_MAX that no interpolation, marginal gain or sum of gains
// in a round can overflow to infinity or NaN, which would leave the ranking undefined.
inline constexpr double kMaxAbsThroughput = 1e18;

// Thrown when the arguments of a round break its contract. The message is one line naming
// the argument, what was expected and what was found; the bindings raise it as ValueError.
class InvalidArgumentError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Everything one round reads, as flat arrays (see RoundInput in aragog/scheduling/round.py).
//
// Workflow tables:
//   agent_offsets[W+1]: workflow w owns global agents [agent_offsets[w], agent_offsets[w+1]).
//   candidate_offsets[A+1], candidate_models: global agent g's candidate models are
//     candidate_models[candidate_offsets[g]:candidate_offsets[g+1]]; the position is the digit.
// Meta-queue, head first:
//   request_workflow[R]; viable_offsets[R+1] into viable_configs (strictly increasing ids).
// Ready items: item_request[I], item_agent[I] (local to the workflow), item_depth[I].
// Engines: engine_model[E], engine_free_slots[E] (may be <= 0), engine_load[E] (occupancy);
//   curve_offsets[E+1] into curve_load / curve_throughput.
// beam_width: B >= 1.
struct RoundInput {
  ArrayView<int32_t> agent_offsets;
  ArrayView<int32_t> candidate_offsets;
  ArrayView<int32_t> candidate_models;
  ArrayView<int32_t> request_workflow;
  ArrayView<int64_t> viable_offsets;
  ArrayView<int64_t> viable_configs;
  ArrayView<int32_t> item_request;
  ArrayView<int32_t> item_agent;
  ArrayView<int32_t> item_depth;
  ArrayView<int32_t> engine_model;
  ArrayView<int32_t> engine_free_slots;
  ArrayView<int32_t> engine_load;
  ArrayView<int32_t> curve_offsets;
  ArrayView<double> curve_load;
  ArrayView<double> curve_throughput;
  int64_t beam_width = 1;
};

// The best assignment of one round.
struct RoundResult {
  // Per item, in the input's item order: the engine it goes to, or -1 (it waits).
  std::vector<int32_t> item_engine;
  // U of the chosen assignment.
  double utilization_gain = 0.0;
  // F of the chosen assignment; 0.0 when nothing was assigned.
  double flexibility = 0.0;
};

// Checks every condition of `validate` in aragog/scheduling/reference.py, plus nothing else.
// Throws InvalidArgumentError naming the first broken condition.
void ValidateRoundInput(const RoundInput& input);

// Validates `input`, then runs one round of the beam search and returns its best assignment.
// Throws InvalidArgumentError on bad input; never reads outside the arrays' bounds.
// Thread-safe: concurrent calls share nothing but read-only input.
RoundResult ScheduleRound(const RoundInput& input);

}  // namespace aragog

#endif  // ARAGOG_CORE_ROUND_H_
