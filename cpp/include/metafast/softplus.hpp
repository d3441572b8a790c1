// log(1 + exp(-|z|)), the term of the binary cross-entropy on logits that needs the C library's
// expf and log1pf (tens of ns per call, one call per query row of every task), on whole
// vectors of doubles instead. Computed in double, so the float loss sums that the history
// records agree with the float64 formula to float precision (tests/test_backprop.py).
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
    const Doubles r = (x - k * box_muller::ln2_high) - k * box_muller::ln2_low;
    constexpr double inverse_factorials[] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720,
                                             1.0 / 5040, 1.0 / 40320, 1.0 / 362880, 1.0 / 3628800,
                                             1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800};
    Doubles p = Doubles{} + inverse_factorials[13];  // Horner from r^13
    for (int n = 12; n >= 0; --n) p = p * r + inverse_factorials[n];
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
