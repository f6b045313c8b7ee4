// Validation of a round's arguments, and the tables the search derives from them.
// Internal to the core: callers use round.h.
#ifndef ARAGOG_CORE_ROUND_PLAN_H_
#define ARAGOG_CORE_ROUND_PLAN_H_

#include <cstdint>
#include <vector>

#include "core/round.h"

namespace aragog {

// What validation learns on the way and the search needs.
struct RoundPlan {
  // Item indices in meta-queue order: request ascending, depth descending, agent ascending.
  std::vector<int64_t> item_order;
  // Per global agent: the place value of its digit, saturated at UINT64_MAX.
  std::vector<uint64_t> agent_stride;
  // Largest number of candidates of any agent.
  int64_t max_radix = 0;
  // Per workflow: its number of configurations, saturated at UINT64_MAX.
  std::vector<uint64_t> workflow_num_configs;
  // Scratch of the repeated-item check, per global agent.
  std::vector<int32_t> agent_last_request;
};

// Validates `input` exactly as reference.validate does (the same conditions, checked in the
// same order, with the same messages) and fills `plan`, reusing its buffers.
// Throws InvalidArgumentError.
void PlanRound(const RoundInput& input, RoundPlan* plan);

}  // namespace aragog

#endif  // ARAGOG_CORE_ROUND_PLAN_H_
