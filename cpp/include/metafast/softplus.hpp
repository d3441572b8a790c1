// log(1 + exp(-|z|)), the term of the binary cross-entropy on logits that needs the C library's
// expf and log1pf (tens of ns per call, one call per query row of every task), on whole
// vectors of doubles instead: the same value to a few ulp of a double, so the loss sums that
// the history records agree with the scalar formula to float precision.
#pragma once

#include "metafast/box_muller.hpp"

namespace metafast::softplus {

#ifdef METAFAST_VECTOR_KERNELS
using box_muller::Doubles, box_muller::Ints, box_muller::Words;

// exp x for x <= 0 (clamped at -700, where it is below 1e-304; NaN stays NaN): x = k ln 2 + r
// with k the nearest integer to x / ln 2 and |r| <= ln 2 / 2 (ln 2 in two parts, so r keeps
// its digits), e^r by its Taylor series to r^13 (truncation below 1e-17), times 2^k.
inline Doubles exp_nonpositive(Doubles x) {
    x = x < -700.0 ? Doubles{} - 700.0 : x;
    const Doubles k = box_muller::round_to_integer(x * 1.4426950408889634);
    constexpr double ln2_high = 0.6931471803691238, ln2_low = 1.9082149292705877e-10;
    const Doubles r = (x - k * ln2_high) - k * ln2_low;
    Doubles p = Doubles{} + 1.0 / 6227020800.0;  // 1 / 13!, Horner down to 1 / 0!
    double factorial = 6227020800.0;
    for (int n = 12; n >= 0; --n) {
        factorial /= double(n + 1);
        p = p * r + 1.0 / factorial;
    }
    const Words scale = reinterpret_cast<Words>(__builtin_convertvector(k, Ints) + 1023) << 52;
    return p * reinterpret_cast<Doubles>(scale);
}

// log(1 + exp(-|z|)): with e = exp(-|z|) in (0, 1] and u = 1 + e rounded, log1p(e) =
// log u - ((u - 1) - e) / u, the first-order correction for the rounding of u.
inline Doubles log1p_exp_minus_abs(Doubles z) {
    const Doubles e = exp_nonpositive(z < 0.0 ? z : -z);
    const Doubles u = 1.0 + e;
    return box_muller::log(u) - ((u - 1.0) - e) / u;
}
#endif

}  // namespace metafast::softplus
