// One scheduling round: a beam search over the ready items of the meta-queue.
//
// The model, in plain words. Items are visited in meta-queue order (request, then deeper
// stage first, then agent). The beam holds up to B partial assignments. Each knows how many
// stage calls it adds to every engine, its utilization gain U so far, and what ranking by
// flexibility F needs: the sum and count of the surviving shares of requests already passed,
// and, for the request being visited, which of its viable configurations still agree with
// every choice made for it and whether a choice was made at all. For the next item, every
// partial assignment is extended by every engine, ascending, that
//   (a) has a free slot left in that partial assignment,
//   (b) serves a model that is a candidate of the item's agent, and
//   (c) keeps at least one of the request's surviving configurations;
// a partial assignment with no such engine is carried on unchanged, in its place. The
// candidates are ranked by U, then F, both descending, ties keeping generation order, and
// the first B become the beam. The loop
//   - stops before an item when no partial assignment has a free slot on any engine;
//   - skips an item no partial assignment can place (no viable configuration, no engine
//     serving a candidate model, or every such engine full everywhere): the beam would be
//     carried on unchanged, and it is already in rank order, so nothing changes.
// Every floating-point value is computed as in aragog/scheduling/reference.py, operation by
// operation, so the answer is bit-identical and ties resolve the same way.
//
// Why it is fast. A request's viable configurations become bit positions: per item, one pass
// over them builds, for each digit an engine can serve, a bitset over 64-bit words and its
// count, so validity is a non-zero AND and the surviving count a popcount (just the count
// when no choice was made yet for the request). Choices are arena nodes with parent
// pointers, never copied. Marginal gains are cached per (engine, calls added). Scratch
// buffers live in a per-thread workspace that keeps its capacity between rounds.
#include "core/round.h"

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/bitset.h"
#include "core/curve.h"
#include "core/digit.h"
#include "core/round_plan.h"

namespace aragog {
namespace {

// One partial assignment of the beam; its per-engine counts and surviving configurations
// live in the workspace's flat buffers, row `index` of each.
struct Beam {
  double gain = 0.0;
  double flex_sum = 0.0;
  int64_t flex_count = 0;
  // Configurations of the current request that agree with every choice for it; meaningful
  // only when `touched`.
  int64_t survivor_count = 0;
  // Engines with a free slot left in this partial assignment.
  int64_t num_open_engines = 0;
  // The latest choice (arena node), or -1.
  int64_t last_choice = -1;
  // Whether some item of the current request was assigned.
  bool touched = false;

  // F: the mean surviving share over the requests given a stage so far.
  double Flexibility(double viable_size) const {
    if (touched) {
      const double share = static_cast<double>(survivor_count) / viable_size;
      return (flex_sum + share) / static_cast<double>(flex_count + 1);
    }
    if (flex_count > 0) return flex_sum / static_cast<double>(flex_count);
    return 0.0;
  }
};

// A partial assignment extended by one choice (or carried on), before ranking.
struct Candidate {
  double gain;
  double flexibility;
  int64_t beam;
  int64_t engine;  // -1: carried on unchanged.
  int64_t kept;    // Surviving configurations of the current request.
};

// Higher U first, then higher F. Not a total order on purpose: equal candidates keep their
// generation order, as Python's stable sort does.
inline bool RanksBefore(const Candidate& a, const Candidate& b) {
  return a.gain > b.gain || (a.gain == b.gain && a.flexibility > b.flexibility);
}

struct ChoiceNode {
  int64_t item;
  int64_t parent;
  int32_t engine;
};

// Scratch buffers for one thread's rounds. Kept between calls, so a warm round allocates
// only its result; the memory held is that of the largest round the thread has run.
struct Workspace {
  RoundPlan plan;
  std::vector<Beam> beams;
  std::vector<Beam> next_beams;
  std::vector<int32_t> added;  // Beam-major: calls added per engine.
  std::vector<int32_t> next_added;
  std::vector<uint64_t> survivors;  // Beam-major: bitset over the current request's viable set.
  std::vector<uint64_t> next_survivors;
  std::vector<Candidate> candidates;
  std::vector<Candidate> ranked;
  std::vector<ChoiceNode> choices;
  std::vector<double> gain_cache;
  std::vector<int64_t> gain_cache_begin;
  std::vector<int64_t> gain_cache_size;
  std::vector<int32_t> engine_slot;  // Per engine: its digit's slot for the item, or -1.
  std::vector<int32_t> digit_slot;   // Per digit of the item's agent: its slot, or -1.
  std::vector<int64_t> slot_digit;
  std::vector<int64_t> slot_count;            // Per slot: viable configurations with that digit.
  std::vector<uint64_t> masks;                // Slot-major: bitset of those configurations.
  std::vector<int8_t> position_slot;          // Per viable position: its digit's slot, or -1.
  std::vector<DigitDivisors> agent_divisors;  // Per global agent, once computed.
  std::vector<uint8_t> agent_divisors_ready;
};

// Past this beam width, ranking sorts all candidates instead of inserting into a short list.
constexpr int64_t kMaxInsertionWidth = 16;

class BeamSearch {
 public:
  BeamSearch(const RoundInput& input, const RoundPlan& plan, Workspace* workspace)
      : in_(input),
        plan_(plan),
        ws_(*workspace),
        num_items_(input.item_request.size()),
        num_engines_(input.engine_model.size()) {}

  RoundResult Run() {
    // Start from the empty assignment.
    Reset();
    const std::vector<int64_t>& order = plan_.item_order;
    for (int64_t k = 0; k < num_items_; ++k) {
      const int64_t item = order[k];
      // Stop: no partial assignment has a free slot left on any engine.
      if (!AnyFreeSlot()) break;
      // Close the previous request's share of F when the item opens a new request.
      const int64_t request = in_.item_request[item];
      if (request != request_) EnterRequest(request);
      // Later items of the same request read the survivors this one leaves.
      const bool keep_survivors = k + 1 < num_items_ && in_.item_request[order[k + 1]] == request;
      // Skip: nothing can place this item, so the beam would carry on unchanged.
      if (!PrepareItem(item, keep_survivors)) continue;
      // Extend every partial assignment, rank, keep the best B.
      Expand();
      Rank();
      Advance(item, keep_survivors);
    }
    return Answer();
  }

 private:
  void Reset() {
    ws_.beams.assign(1, Beam{});
    ws_.added.assign(num_engines_, 0);
    int64_t num_open = 0;
    for (int64_t e = 0; e < num_engines_; ++e) num_open += in_.engine_free_slots[e] > 0;
    ws_.beams[0].num_open_engines = num_open;
    num_beams_ = 1;
    request_ = -1;
    viable_size_ = 1.0;
    num_words_ = 0;
    ws_.choices.clear();
    ws_.choices.reserve(num_items_ * std::min<int64_t>(in_.beam_width, kMaxInsertionWidth));

    // An engine adds at most min(free slots, items) calls, so that many gains can be cached.
    ws_.gain_cache_begin.resize(num_engines_);
    ws_.gain_cache_size.assign(num_engines_, 0);
    int64_t total = 0;
    for (int64_t e = 0; e < num_engines_; ++e) {
      ws_.gain_cache_begin[e] = total;
      total += std::clamp<int64_t>(in_.engine_free_slots[e], 0, num_items_);
    }
    if (static_cast<int64_t>(ws_.gain_cache.size()) < total) ws_.gain_cache.resize(total);

    ws_.engine_slot.resize(num_engines_);
    ws_.digit_slot.assign(plan_.max_radix, -1);
    ws_.slot_digit.resize(num_engines_);
    ws_.slot_count.resize(num_engines_);
    ws_.agent_divisors.resize(plan_.agent_stride.size());
    ws_.agent_divisors_ready.assign(plan_.agent_stride.size(), 0);
  }

  // Free slots of engine `e` left to a partial assignment that added `added` calls to it.
  int64_t FreeSlots(int64_t e, int64_t added) const {
    return static_cast<int64_t>(in_.engine_free_slots[e]) - added;
  }

  bool AnyFreeSlot() const {
    for (int64_t b = 0; b < num_beams_; ++b) {
      if (ws_.beams[b].num_open_engines > 0) return true;
    }
    return false;
  }

  void EnterRequest(int64_t request) {
    for (int64_t b = 0; b < num_beams_; ++b) {
      Beam& beam = ws_.beams[b];
      if (beam.touched) {
        beam.flex_sum += static_cast<double>(beam.survivor_count) / viable_size_;
        beam.flex_count += 1;
        beam.touched = false;
      }
    }
    request_ = request;
    const int64_t first = in_.viable_offsets[request];
    viable_ = in_.viable_configs.Slice(first, in_.viable_offsets[request + 1]);
    viable_size_ = static_cast<double>(std::max<int64_t>(viable_.size(), 1));
    num_words_ = (viable_.size() + 63) / 64;
  }

  // Finds the engines that can serve the item's agent, and groups the request's viable
  // configurations by their digit at that agent. False when no partial assignment can place
  // the item.
  bool PrepareItem(int64_t item, bool keep_survivors) {
    const int64_t global_agent =
        in_.agent_offsets[in_.request_workflow[request_]] + in_.item_agent[item];
    const int64_t first = in_.candidate_offsets[global_agent];
    const int64_t radix = in_.candidate_offsets[global_agent + 1] - first;
    const int32_t* candidates = in_.candidate_models.data() + first;

    // Digit of each engine's model at this agent, numbered into slots as first seen.
    num_slots_ = 0;
    bool any_open = false;
    for (int64_t e = 0; e < num_engines_; ++e) {
      int32_t slot = -1;
      for (int64_t d = 0; d < radix; ++d) {
        if (candidates[d] != in_.engine_model[e]) continue;
        if (ws_.digit_slot[d] < 0) {
          ws_.digit_slot[d] = static_cast<int32_t>(num_slots_);
          ws_.slot_digit[num_slots_++] = d;
        }
        slot = ws_.digit_slot[d];
        break;
      }
      ws_.engine_slot[e] = slot;
      if (slot >= 0 && !any_open) any_open = HasFreeSlotSomewhere(e);
    }
    const bool placeable = any_open && !viable_.empty();
    if (placeable) {
      GroupViableByDigit(global_agent, radix, keep_survivors || AnyTouched());
    }
    for (int64_t s = 0; s < num_slots_; ++s) ws_.digit_slot[ws_.slot_digit[s]] = -1;
    return placeable;
  }

  bool HasFreeSlotSomewhere(int64_t engine) const {
    for (int64_t b = 0; b < num_beams_; ++b) {
      if (FreeSlots(engine, ws_.added[b * num_engines_ + engine]) > 0) return true;
    }
    return false;
  }

  bool AnyTouched() const {
    for (int64_t b = 0; b < num_beams_; ++b) {
      if (ws_.beams[b].touched) return true;
    }
    return false;
  }

  // Counts, and when `with_masks` marks in a bitset, the viable configurations whose digit
  // an engine serves.
  void GroupViableByDigit(int64_t global_agent, int64_t radix, bool with_masks) {
    if (!ws_.agent_divisors_ready[global_agent]) {
      ws_.agent_divisors[global_agent] = DigitDivisors(plan_.agent_stride[global_agent], radix);
      ws_.agent_divisors_ready[global_agent] = 1;
    }
    const DigitReader digit(ws_.agent_divisors[global_agent], viable_.back());
    const int32_t* digit_slot = ws_.digit_slot.data();
    int64_t* count = ws_.slot_count.data();
    const int64_t size = viable_.size();
    const int64_t num_mask_words = num_slots_ * num_words_;
    if (with_masks && static_cast<int64_t>(ws_.masks.size()) < num_mask_words) {
      ws_.masks.resize(num_mask_words);
    }
    if (num_slots_ <= kMaxByteSlot) {
      // Two passes: a slot byte per position (independent iterations), then bitsets and
      // counts word by word. Marking bits directly chains every update through memory.
      ws_.position_slot.resize(num_words_ * 64);
      int8_t* position_slot = ws_.position_slot.data();
      for (int64_t p = 0; p < size; ++p) {
        position_slot[p] = static_cast<int8_t>(digit_slot[digit(viable_[p])]);
      }
      std::fill(position_slot + size, position_slot + num_words_ * 64, int8_t{-1});
      MarkSlots(position_slot, num_words_, num_slots_, with_masks ? ws_.masks.data() : nullptr,
                count);
      return;
    }
    std::fill(count, count + num_slots_, 0);
    if (!with_masks) {
      for (int64_t p = 0; p < size; ++p) {
        const int32_t slot = digit_slot[digit(viable_[p])];
        if (slot >= 0) ++count[slot];
      }
      return;
    }
    uint64_t* masks = ws_.masks.data();
    std::fill(masks, masks + num_mask_words, 0);
    for (int64_t p = 0; p < size; ++p) {
      const int32_t slot = digit_slot[digit(viable_[p])];
      if (slot < 0) continue;
      ++count[slot];
      masks[slot * num_words_ + (p >> 6)] |= uint64_t{1} << (p & 63);
    }
  }

  void Expand() {
    ws_.candidates.clear();
    for (int64_t b = 0; b < num_beams_; ++b) {
      const Beam& beam = ws_.beams[b];
      const int32_t* added = ws_.added.data() + b * num_engines_;
      const uint64_t* survivors = beam.touched ? ws_.survivors.data() + b * num_words_ : nullptr;
      bool extended = false;
      for (int64_t e = 0; e < num_engines_; ++e) {
        // Pass an engine with no free slot left here, whose model is not a candidate of the
        // agent, or that no surviving configuration uses at this agent.
        if (FreeSlots(e, added[e]) <= 0) continue;
        const int32_t slot = ws_.engine_slot[e];
        if (slot < 0) continue;
        const int64_t kept =
            beam.touched
                ? CountCommonBits(survivors, ws_.masks.data() + slot * num_words_, num_words_)
                : ws_.slot_count[slot];
        if (kept == 0) continue;
        const double gain = beam.gain + Gain(e, added[e]);
        const double share = static_cast<double>(kept) / viable_size_;
        const double flexibility =
            (beam.flex_sum + share) / static_cast<double>(beam.flex_count + 1);
        ws_.candidates.push_back(Candidate{gain, flexibility, b, e, kept});
        extended = true;
      }
      if (!extended) {
        ws_.candidates.push_back(
            Candidate{beam.gain, beam.Flexibility(viable_size_), b, -1, beam.survivor_count});
      }
    }
  }

  // The first B candidates of a stable sort by (U, F) descending.
  void Rank() {
    std::vector<Candidate>& ranked = ws_.ranked;
    const std::vector<Candidate>& candidates = ws_.candidates;
    const int64_t width =
        std::min<int64_t>(in_.beam_width, static_cast<int64_t>(candidates.size()));
    if (width > kMaxInsertionWidth) {
      ranked = candidates;
      std::stable_sort(ranked.begin(), ranked.end(), RanksBefore);
      ranked.resize(width);
      return;
    }
    ranked.clear();
    for (const Candidate& candidate : candidates) {
      if (static_cast<int64_t>(ranked.size()) == width && !RanksBefore(candidate, ranked.back())) {
        continue;
      }
      // After every candidate it does not strictly outrank: generation order among equals.
      auto position = ranked.end();
      while (position != ranked.begin() && RanksBefore(candidate, *(position - 1))) --position;
      ranked.insert(position, candidate);
      if (static_cast<int64_t>(ranked.size()) > width) ranked.pop_back();
    }
  }

  // Builds the next beam from the ranked candidates.
  void Advance(int64_t item, bool keep_survivors) {
    const int64_t num_next = static_cast<int64_t>(ws_.ranked.size());
    ws_.next_beams.resize(num_next);
    ws_.next_added.resize(num_next * num_engines_);
    if (keep_survivors && static_cast<int64_t>(ws_.next_survivors.size()) < num_next * num_words_) {
      ws_.next_survivors.resize(num_next * num_words_);
    }
    for (int64_t k = 0; k < num_next; ++k) {
      const Candidate& candidate = ws_.ranked[k];
      const Beam& parent = ws_.beams[candidate.beam];
      Beam& child = ws_.next_beams[k];
      child = parent;
      int32_t* added = ws_.next_added.data() + k * num_engines_;
      std::copy_n(ws_.added.data() + candidate.beam * num_engines_, num_engines_, added);
      if (candidate.engine < 0) {
        if (keep_survivors && parent.touched) {
          std::copy_n(ws_.survivors.data() + candidate.beam * num_words_, num_words_,
                      ws_.next_survivors.data() + k * num_words_);
        }
        continue;
      }
      const int64_t e = candidate.engine;
      added[e] += 1;
      if (FreeSlots(e, added[e]) == 0) child.num_open_engines -= 1;
      assert(child.num_open_engines >= 0 && "an engine closed twice");
      child.gain = candidate.gain;
      child.touched = true;
      child.survivor_count = candidate.kept;
      ws_.choices.push_back(
          ChoiceNode{item, parent.last_choice, static_cast<int32_t>(candidate.engine)});
      child.last_choice = static_cast<int64_t>(ws_.choices.size()) - 1;
      if (keep_survivors) {
        const uint64_t* mask = ws_.masks.data() + ws_.engine_slot[e] * num_words_;
        uint64_t* survivors = ws_.next_survivors.data() + k * num_words_;
        const uint64_t* parent_survivors = ws_.survivors.data() + candidate.beam * num_words_;
        if (parent.touched) {
          for (int64_t w = 0; w < num_words_; ++w) survivors[w] = parent_survivors[w] & mask[w];
        } else {
          std::copy_n(mask, num_words_, survivors);
        }
      }
    }
    std::swap(ws_.beams, ws_.next_beams);
    std::swap(ws_.added, ws_.next_added);
    std::swap(ws_.survivors, ws_.next_survivors);
    num_beams_ = num_next;
  }

  // Marginal gain of engine `e` with `added` calls added by this round; cached, since every
  // partial assignment at the same count asks the same question.
  double Gain(int64_t e, int64_t added) {
    const int64_t begin = ws_.gain_cache_begin[e];
    int64_t& size = ws_.gain_cache_size[e];
    if (added >= size) {
      const int64_t first = in_.curve_offsets[e];
      const CurveView curve{in_.curve_load.data() + first, in_.curve_throughput.data() + first,
                            in_.curve_offsets[e + 1] - first};
      for (; size <= added; ++size) {
        ws_.gain_cache[begin + size] =
            MarginalGain(curve, static_cast<int64_t>(in_.engine_load[e]) + size);
      }
    }
    return ws_.gain_cache[begin + added];
  }

  RoundResult Answer() const {
    RoundResult result;
    result.item_engine.assign(num_items_, -1);
    const Beam& best = ws_.beams[0];
    for (int64_t node = best.last_choice; node >= 0; node = ws_.choices[node].parent) {
      result.item_engine[ws_.choices[node].item] = ws_.choices[node].engine;
    }
    result.utilization_gain = best.gain;
    result.flexibility = best.Flexibility(viable_size_);
    return result;
  }

  const RoundInput& in_;
  const RoundPlan& plan_;
  Workspace& ws_;
  const int64_t num_items_;
  const int64_t num_engines_;
  int64_t num_beams_ = 0;
  // The request being visited, its viable set, max(|viable set|, 1) and its bitset words.
  int64_t request_ = -1;
  ArrayView<int64_t> viable_;
  double viable_size_ = 1.0;
  int64_t num_words_ = 0;
  // Distinct digits the engines serve at the current item.
  int64_t num_slots_ = 0;
};

// This thread's workspace. NOTE: not inlined on purpose: in a shared library, GCC would
// otherwise recompute the thread-local address (a __tls_get_addr call) at every use of a
// workspace member in the inlined search, which cost about a sixth of a round.
#if defined(__GNUC__)
__attribute__((noinline))
#endif
Workspace* ThisThreadWorkspace() {
  thread_local Workspace workspace;
  return &workspace;
}

}  // namespace

RoundResult ScheduleRound(const RoundInput& input) {
  Workspace* workspace = ThisThreadWorkspace();
  // Validate, and put the items in meta-queue order.
  PlanRound(input, &workspace->plan);
  // Search with this thread's scratch buffers.
  BeamSearch search(input, workspace->plan, workspace);
  return search.Run();
}

}  // namespace aragog
