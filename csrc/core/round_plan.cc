// Validation of a round's arguments.
//
// Mirrors `validate` in aragog/scheduling/reference.py condition by condition and in the same
// order, so that both raise on the same inputs with the same message. Every check that the
// search's memory safety depends on (offsets in range and ordered, ids in range) is here;
// the search itself only asserts, in debug builds.
#include "core/round_plan.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/round.h"

namespace aragog {
namespace {

[[noreturn]] void Fail(const std::string& message) { throw InvalidArgumentError(message); }

template <typename T>
bool StrictlyIncreasing(ArrayView<T> values) {
  for (int64_t i = 1; i < values.size(); ++i) {
    if (!(values[i - 1] < values[i])) return false;
  }
  return true;
}

template <typename T>
bool NonDecreasing(ArrayView<T> values) {
  for (int64_t i = 1; i < values.size(); ++i) {
    if (values[i] < values[i - 1]) return false;
  }
  return true;
}

uint64_t SaturatingMultiply(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) {
    return std::numeric_limits<uint64_t>::max();
  }
  return a * b;
}

bool HasRepeatedValue(ArrayView<int32_t> values, std::vector<int32_t>* scratch) {
  // Candidate lists are short: pairwise comparison beats sorting below a few dozen.
  constexpr int64_t kPairwiseLimit = 32;
  if (values.size() <= kPairwiseLimit) {
    for (int64_t i = 1; i < values.size(); ++i) {
      for (int64_t j = 0; j < i; ++j) {
        if (values[i] == values[j]) return true;
      }
    }
    return false;
  }
  scratch->assign(values.begin(), values.end());
  std::sort(scratch->begin(), scratch->end());
  return std::adjacent_find(scratch->begin(), scratch->end()) != scratch->end();
}

// Workflow tables. Fills the per-agent strides and each workflow's number of configurations.
void CheckWorkflowTables(const RoundInput& in, RoundPlan* plan) {
  const ArrayView<int32_t> agent_offsets = in.agent_offsets;
  const ArrayView<int32_t> candidate_offsets = in.candidate_offsets;
  const ArrayView<int32_t> candidate_models = in.candidate_models;
  if (agent_offsets.size() < 2 || agent_offsets[0] != 0 || !StrictlyIncreasing(agent_offsets)) {
    Fail("agent_offsets must start at 0 and give every workflow an agent");
  }
  if (agent_offsets.back() != candidate_offsets.size() - 1) {
    Fail("agent_offsets must end at the number of agents (candidate_offsets - 1)");
  }
  if (candidate_offsets[0] != 0 || !StrictlyIncreasing(candidate_offsets)) {
    Fail("candidate_offsets must start at 0 and give every agent a candidate");
  }
  if (candidate_offsets.back() != candidate_models.size()) {
    Fail("candidate_offsets must end at len(candidate_models)");
  }
  for (const int32_t model : candidate_models) {
    if (model < 0) Fail("candidate_models must be non-negative model indices");
  }
  const int64_t num_agents = candidate_offsets.size() - 1;
  std::vector<int32_t> scratch;
  plan->max_radix = 0;
  for (int64_t g = 0; g < num_agents; ++g) {
    const ArrayView<int32_t> candidates =
        candidate_models.Slice(candidate_offsets[g], candidate_offsets[g + 1]);
    if (HasRepeatedValue(candidates, &scratch)) {
      Fail("agent " + std::to_string(g) + " lists a candidate model twice");
    }
    plan->max_radix = std::max<int64_t>(plan->max_radix, candidates.size());
  }

  // Place values of the digits, agent 0 of each workflow least significant.
  const int64_t num_workflows = agent_offsets.size() - 1;
  plan->workflow_num_configs.resize(num_workflows);
  plan->agent_stride.resize(num_agents);
  for (int64_t w = 0; w < num_workflows; ++w) {
    uint64_t stride = 1;
    for (int64_t g = agent_offsets[w]; g < agent_offsets[w + 1]; ++g) {
      plan->agent_stride[g] = stride;
      const uint64_t radix = candidate_offsets[g + 1] - candidate_offsets[g];
      stride = SaturatingMultiply(stride, radix);
    }
    plan->workflow_num_configs[w] = stride;
  }
}

void CheckMetaQueue(const RoundInput& in, const std::vector<uint64_t>& workflow_num_configs) {
  const ArrayView<int32_t> request_workflow = in.request_workflow;
  const ArrayView<int64_t> viable_offsets = in.viable_offsets;
  const ArrayView<int64_t> viable_configs = in.viable_configs;
  const int64_t num_requests = request_workflow.size();
  if (viable_offsets.size() != num_requests + 1 || viable_offsets[0] != 0 ||
      viable_offsets.back() != viable_configs.size()) {
    Fail("viable_offsets must have one entry per request plus one, 0 to len(viable)");
  }
  if (!NonDecreasing(viable_offsets)) Fail("viable_offsets must be non-decreasing");
  const int64_t num_workflows = static_cast<int64_t>(workflow_num_configs.size());
  for (const int32_t w : request_workflow) {
    if (w < 0 || w >= num_workflows) Fail("request_workflow holds an unknown workflow index");
  }
  for (int64_t r = 0; r < num_requests; ++r) {
    const uint64_t num_configs = workflow_num_configs[request_workflow[r]];
    const ArrayView<int64_t> viable =
        viable_configs.Slice(viable_offsets[r], viable_offsets[r + 1]);
    if (!viable.empty() &&
        (viable.front() < 0 ||
         (viable.back() >= 0 && static_cast<uint64_t>(viable.back()) >= num_configs))) {
      // A saturated count stands for 2^64 or more; no int64 id reaches it, so it is only
      // printed here, for a negative id.
      const std::string bound = num_configs == std::numeric_limits<uint64_t>::max()
                                    ? "at least " + std::to_string(num_configs)
                                    : std::to_string(num_configs);
      Fail("request " + std::to_string(r) + ": a viable configuration is out of [0, " + bound +
           ")");
    }
    if (!StrictlyIncreasing(viable)) {
      Fail("request " + std::to_string(r) + ": viable configurations must be strictly increasing");
    }
  }
}

// The first item, in input order, that repeats the (request, agent) of an earlier item,
// among items [0, limit); -1 if none. Slow path, only run to word an error.
int64_t FirstRepeatedItem(const RoundInput& in, int64_t limit) {
  std::vector<std::tuple<int32_t, int32_t, int64_t>> keys;
  keys.reserve(limit);
  for (int64_t i = 0; i < limit; ++i) keys.emplace_back(in.item_request[i], in.item_agent[i], i);
  std::sort(keys.begin(), keys.end());
  int64_t first = -1;
  for (size_t k = 1; k < keys.size(); ++k) {
    const bool repeats = std::get<0>(keys[k]) == std::get<0>(keys[k - 1]) &&
                         std::get<1>(keys[k]) == std::get<1>(keys[k - 1]);
    // The second occurrence of a pair is the earliest item that repeats it.
    const bool second = repeats && (k < 2 || std::get<0>(keys[k - 2]) != std::get<0>(keys[k]) ||
                                    std::get<1>(keys[k - 2]) != std::get<1>(keys[k]));
    if (second && (first < 0 || std::get<2>(keys[k]) < first)) first = std::get<2>(keys[k]);
  }
  return first;
}

[[noreturn]] void FailRepeatedItem(const RoundInput& in, int64_t i) {
  Fail("item " + std::to_string(i) + ": request " + std::to_string(in.item_request[i]) +
       " lists agent " + std::to_string(in.item_agent[i]) + " twice");
}

bool ItemBefore(const RoundInput& in, int64_t a, int64_t b) {
  if (in.item_request[a] != in.item_request[b]) return in.item_request[a] < in.item_request[b];
  if (in.item_depth[a] != in.item_depth[b]) return in.item_depth[a] > in.item_depth[b];
  if (in.item_agent[a] != in.item_agent[b]) return in.item_agent[a] < in.item_agent[b];
  return a < b;
}

void CheckItems(const RoundInput& in, RoundPlan* plan) {
  const int64_t num_items = in.item_request.size();
  if (in.item_agent.size() != num_items || in.item_depth.size() != num_items) {
    Fail("item_request, item_agent and item_depth must have one length");
  }

  // Ranges, in input order. The reference checks an item's range and its repetition together,
  // so an earlier repeated item is reported before a later out-of-range one.
  const int64_t num_requests = in.request_workflow.size();
  for (int64_t i = 0; i < num_items; ++i) {
    const int32_t r = in.item_request[i];
    std::string message;
    if (r < 0 || r >= num_requests) {
      message = "item " + std::to_string(i) + ": request " + std::to_string(r) +
                " is not in the meta-queue";
    } else {
      const int32_t w = in.request_workflow[r];
      const int32_t agent = in.item_agent[i];
      if (agent < 0 || agent >= in.agent_offsets[w + 1] - in.agent_offsets[w]) {
        message = "item " + std::to_string(i) + ": agent " + std::to_string(agent) +
                  " is not in workflow " + std::to_string(w);
      } else if (in.item_depth[i] < 0) {
        message = "item " + std::to_string(i) + ": depth must be non-negative";
      }
    }
    if (!message.empty()) {
      const int64_t repeated = FirstRepeatedItem(in, i);
      if (repeated >= 0) FailRepeatedItem(in, repeated);
      Fail(message);
    }
  }

  // Meta-queue order; callers usually pass items in it already.
  plan->item_order.resize(num_items);
  for (int64_t i = 0; i < num_items; ++i) plan->item_order[i] = i;
  auto before = [&in](int64_t a, int64_t b) { return ItemBefore(in, a, b); };
  if (!std::is_sorted(plan->item_order.begin(), plan->item_order.end(), before)) {
    std::sort(plan->item_order.begin(), plan->item_order.end(), before);
  }

  // Repeated (request, agent) pairs: a request's items are consecutive in that order, so a
  // per-agent stamp of the last request that used it finds them in one pass.
  std::vector<int32_t>& last_request = plan->agent_last_request;
  last_request.assign(plan->agent_stride.size(), -1);
  for (const int64_t i : plan->item_order) {
    const int32_t r = in.item_request[i];
    const int64_t g = in.agent_offsets[in.request_workflow[r]] + in.item_agent[i];
    if (last_request[g] == r) FailRepeatedItem(in, FirstRepeatedItem(in, num_items));
    last_request[g] = r;
  }
}

void CheckEngines(const RoundInput& in) {
  const int64_t num_engines = in.engine_model.size();
  if (in.engine_free_slots.size() != num_engines || in.engine_load.size() != num_engines) {
    Fail("engine_model, engine_free_slots and engine_load must have one length");
  }
  for (const int32_t load : in.engine_load) {
    if (load < 0) Fail("engine_load must be non-negative");
  }
  const ArrayView<int32_t> curve_offsets = in.curve_offsets;
  if (curve_offsets.size() != num_engines + 1 || curve_offsets[0] != 0) {
    Fail("curve_offsets must have one entry per engine plus one, starting at 0");
  }
  if (!StrictlyIncreasing(curve_offsets) || curve_offsets.back() != in.curve_load.size()) {
    Fail("curve_offsets must give every engine a point and end at len(curve_load)");
  }
  if (in.curve_throughput.size() != in.curve_load.size()) {
    Fail("curve_load and curve_throughput must have one length");
  }
  for (int64_t j = 0; j < in.curve_load.size(); ++j) {
    if (!std::isfinite(in.curve_load[j]) || !std::isfinite(in.curve_throughput[j])) {
      Fail("curve points must be finite");
    }
  }
  for (const double throughput : in.curve_throughput) {
    if (std::fabs(throughput) > kMaxAbsThroughput) {
      Fail("curve throughputs must lie within [-1e18, 1e18]");
    }
  }
  for (int64_t e = 0; e < num_engines; ++e) {
    const ArrayView<double> loads = in.curve_load.Slice(curve_offsets[e], curve_offsets[e + 1]);
    if (loads[0] != 0.0 || !StrictlyIncreasing(loads)) {
      Fail("engine " + std::to_string(e) + ": curve loads must start at 0 and strictly increase");
    }
  }
}

}  // namespace

void PlanRound(const RoundInput& input, RoundPlan* plan) {
  if (input.beam_width < 1) {
    Fail("beam_width must be at least 1, found " + std::to_string(input.beam_width));
  }
  CheckWorkflowTables(input, plan);
  CheckMetaQueue(input, plan->workflow_num_configs);
  CheckItems(input, plan);
  CheckEngines(input);
}

void ValidateRoundInput(const RoundInput& input) {
  RoundPlan plan;
  PlanRound(input, &plan);
}

}  // namespace aragog
