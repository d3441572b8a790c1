// Logarithm, sine and cosine on whole vectors of doubles, for the task samplers: the Box-Muller
// of CounterRng::fill_normal, r = sqrt(-2 log x), (r cos 2 pi u, r sin 2 pi u), and the
// sine waves of Sinusoid. The C library's functions are scalar calls, tens of ns each; these
// polynomials give the same values to a few ulp in a few ns.
#pragma once

#include <cstddef>
#include <cstdint>

#include "metafast/simd.hpp"

namespace metafast::box_muller {

#ifdef METAFAST_VECTOR_KERNELS
constexpr std::size_t wide = simd::wide;
using Doubles = simd::vec<double, wide>;
using Words = simd::vec<std::uint64_t, wide>;
using Ints = simd::vec<std::int64_t, wide>;
constexpr std::size_t lanes = simd::lanes<double, wide>;

// ln 2 in two parts: ln2_high has few enough bits that its products with exponents are exact.
constexpr double ln2_high = 0.6931471803691238, ln2_low = 1.9082149292705877e-10;

// log x for normal x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)), and
// log m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1) / (m + 1), |s| < 0.172; terms
// up to s^23 leave a truncation error below 1e-18.
inline Doubles log(Doubles x) {
    const Words bits = reinterpret_cast<Words>(x);
    Doubles m = reinterpret_cast<Doubles>((bits & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL);
    Doubles e = __builtin_convertvector(reinterpret_cast<Ints>(bits >> 52), Doubles) - 1023.0;
    const Ints high = m > 1.4142135623730951;
    m = high ? m * 0.5 : m;
    e = high ? e + 1.0 : e;
    const Doubles s = (m - 1.0) / (m + 1.0);
    const Doubles z = s * s;
    Doubles p = Doubles{} + 1.0 / 23;  // 1 / (2k + 1), Horner in s^2 from k = 11
    for (int k = 10; k >= 0; --k) p = p * z + 1.0 / (2 * k + 1);
    return e * ln2_high + (e * ln2_low + 2.0 * s * p);
}

// Nearest integer of each lane (ties to even), for |x| < 2^51: adding and subtracting
// 1.5 * 2^52 leaves no fraction bits.
inline Doubles round_to_integer(Doubles x) {
    constexpr double shifter = 0x1.8p52;
    return (x + shifter) - shifter;
}

// sin and cos of 2 pi u: 4u = q + f with q the nearest integer and |f| <= 1/2, so
// 2 pi u = q pi/2 + a with |a| = |f| pi/2 <= pi/4 (f is exact), where Taylor series to a^17 and
// a^18 are exact to 1e-19; then the rotation by the quadrant q mod 4.
inline void sincos_turns(Doubles u, Doubles& sine, Doubles& cosine) {
    const Doubles t = 4.0 * u;
    const Doubles q = round_to_integer(t);
    const Doubles a = (t - q) * 1.5707963267948966;
    const Doubles a2 = a * a;
    // (-1)^k / (2k+1)! and (-1)^k / (2k)!, k = 0, 1, ...: Horner in a^2 from the last.
    constexpr double sine_coefficients[] = {1.0, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880,
                                            -1.0 / 39916800, 1.0 / 6227020800, -1.0 / 1307674368000,
                                            1.0 / 355687428096000};
    constexpr double cosine_coefficients[] = {1.0, -1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320,
                                              -1.0 / 3628800, 1.0 / 479001600, -1.0 / 87178291200,
                                              1.0 / 20922789888000, -1.0 / 6402373705728000};
    Doubles s = Doubles{} + sine_coefficients[8];
    for (int k = 7; k >= 0; --k) s = s * a2 + sine_coefficients[k];
    s = s * a;
    Doubles c = Doubles{} + cosine_coefficients[9];
    for (int k = 8; k >= 0; --k) c = c * a2 + cosine_coefficients[k];
    const Ints quadrant = __builtin_convertvector(q, Ints) & 3;
    sine = quadrant == 0 ? s : (quadrant == 1 ? c : (quadrant == 2 ? -s : -c));
    cosine = quadrant == 0 ? c : (quadrant == 1 ? -s : (quadrant == 2 ? -c : s));
}

// sin x for |x| < 1e9: x = 2 pi k + r with |r| <= pi (2 pi in parts, so r keeps its digits),
// then sin of r / (2 pi) turns. With fused multiply-adds x - k high is exact for a 53-bit high
// part; without, high is split in two parts of 25 bits, whose products with k (|k| < 2^28) are
// exact (Cody and Waite).
inline Doubles sin(Doubles x) {
    constexpr double inverse_two_pi = 0.15915494309189535;
    const Doubles k = round_to_integer(x * inverse_two_pi);
#if defined(__FMA__)
    constexpr double two_pi_high = 6.28318530717958623200, two_pi_low = 2.44929359829470635e-16;
    const Doubles r = (x - k * two_pi_high) - k * two_pi_low;
#else
    constexpr double two_pi_1 = 6.283185243606567, two_pi_2 = 6.357301884918343e-08,
                     two_pi_3 = 2.4492935982947064e-16;
    const Doubles r = ((x - k * two_pi_1) - k * two_pi_2) - k * two_pi_3;
#endif
    Doubles sine, cosine;
    sincos_turns(r * inverse_two_pi, sine, cosine);
    return sine;
}
#endif

}  // namespace metafast::box_muller
