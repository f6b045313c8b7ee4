// Throughput-versus-load curves: piecewise-linear, flat past the last point.
#ifndef ARAGOG_CORE_CURVE_H_
#define ARAGOG_CORE_CURVE_H_

#include <cstdint>

namespace aragog {

// One engine's profiled curve: points (loads[j], throughputs[j]) for j < num_points, loads
// strictly increasing from 0. The round validates these preconditions before reading a curve.
struct CurveView {
  const double* loads = nullptr;
  const double* throughputs = nullptr;
  int64_t num_points = 0;
};

// Throughput at `load`: linear between neighbouring points, flat past the last one.
// NOTE: the expression and its evaluation order are those of `interpolate` in
// aragog/scheduling/reference.py; with contraction off (-ffp-contract=off) the result is
// bit-identical, which the beam's tie-breaking relies on.
inline double InterpolateThroughput(const CurveView& curve, double load) {
  const int64_t last = curve.num_points - 1;
  if (load >= curve.loads[last]) return curve.throughputs[last];
  int64_t j = 1;
  while (j < last && curve.loads[j] <= load) ++j;
  const double x0 = curve.loads[j - 1];
  const double x1 = curve.loads[j];
  const double y0 = curve.throughputs[j - 1];
  const double y1 = curve.throughputs[j];
  return y0 + (y1 - y0) * (load - x0) / (x1 - x0);
}

// Throughput gained by one more running stage call on an engine at `load`.
inline double MarginalGain(const CurveView& curve, int64_t load) {
  return InterpolateThroughput(curve, static_cast<double>(load + 1)) -
         InterpolateThroughput(curve, static_cast<double>(load));
}

}  // namespace aragog

#endif  // ARAGOG_CORE_CURVE_H_
