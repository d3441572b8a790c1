// Reciprocals and square roots of float vectors from the CPU's estimate instructions refined by
// one Newton step: a few multiply-adds per vector instead of the divider, whose 10-12 cycles
// per 512-bit vector bound elementwise loops such as Adam's. Within a few ulp of the exact
// operations; without AVX the exact operations are used.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "metafast/simd.hpp"

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace metafast::fast {

#ifdef METAFAST_VECTOR_KERNELS
using Floats = simd::vec<float, simd::wide>;
constexpr std::size_t float_lanes = simd::lanes<float, simd::wide>;

// 1 / q for finite q > 0.
inline Floats reciprocal_of_finite(Floats q) {
#if defined(__AVX512F__)
    const Floats r = reinterpret_cast<Floats>(_mm512_maskz_rcp14_ps(0xFFFF, reinterpret_cast<__m512>(q)));
#elif defined(__AVX__)
    const Floats r = reinterpret_cast<Floats>(_mm256_rcp_ps(reinterpret_cast<__m256>(q)));
#else
    return 1.0f / q;
#endif
#if defined(__AVX__)
    return r * (2.0f - q * r);
#endif
}

// 1 / q for q > 0, +inf included (Adam's denominator is infinite where v overflowed).
inline Floats reciprocal(Floats q) {
    // The estimate's refinement gives 0 * inf = NaN at +inf.
    return q == std::numeric_limits<float>::infinity() ? Floats{} : reciprocal_of_finite(q);
}

// sqrt(x) for x >= 0 (0 and +inf included).
inline Floats sqrt(Floats x) {
#if defined(__AVX512F__)
    Floats y = reinterpret_cast<Floats>(_mm512_maskz_rsqrt14_ps(0xFFFF, reinterpret_cast<__m512>(x)));
#elif defined(__AVX__)
    Floats y = reinterpret_cast<Floats>(_mm256_rsqrt_ps(reinterpret_cast<__m256>(x)));
#else
    Floats y;
    for (std::size_t l = 0; l < float_lanes; ++l) y[l] = std::sqrt(x[l]);
    return y;
#endif
#if defined(__AVX__)
    y = y * (1.5f - 0.5f * x * y * y);
    const Floats root = x * y;
    // At 0 and +inf the estimate's refinement gives 0 * inf = NaN, and the root is x itself
    // (one test for both: NaN only there, or where x is NaN already).
    return root == root ? root : x;
#endif
}

#if defined(__AVX2__) && !defined(__AVX512F__)
// The mask of AVX2's masked loads and stores for lanes [0, count): in a register, so that a
// partial vector never goes through memory a lane at a time (the masked lanes are neither read
// nor written, as with AVX-512's masks).
inline __m256i first_lanes(std::size_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// a < b ? a : b and a > b ? a : b, lane by lane (so b where either is NaN): one min or max
// instruction, where the compilers make a compare and a blend of the conditional expression.
inline Floats lesser(Floats a, Floats b) {
#if defined(__AVX512F__)  // the zero-masked form: GCC 12's unmasked one starts from an undefined vector and warns
    return reinterpret_cast<Floats>(_mm512_maskz_min_ps(0xFFFF, reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b)));
#elif defined(__AVX__)
    return reinterpret_cast<Floats>(_mm256_min_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b)));
#else
    return a < b ? a : b;
#endif
}

inline Floats greater(Floats a, Floats b) {
#if defined(__AVX512F__)
    return reinterpret_cast<Floats>(_mm512_maskz_max_ps(0xFFFF, reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b)));
#elif defined(__AVX__)
    return reinterpret_cast<Floats>(_mm256_max_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b)));
#else
    return a > b ? a : b;
#endif
}

// +1 or -1 with the sign bit of x, lane by lane (-1 at -0).
inline Floats unit_with_sign_of(Floats x) {
    using Bits = simd::vec<std::uint32_t, simd::wide>;
    return reinterpret_cast<Floats>((reinterpret_cast<Bits>(x) & 0x80000000u) | 0x3f800000u);
}

// The first `count` (at most float_lanes) floats at p, zeros after them; and the way back.
inline Floats load_partial(const float* p, std::size_t count) {
    if (count == float_lanes) return simd::load<float, simd::wide>(p);
#if defined(__AVX512F__)
    return simd::load_first(p, static_cast<unsigned>(count));
#elif defined(__AVX2__)
    return reinterpret_cast<Floats>(_mm256_maskload_ps(p, first_lanes(count)));
#else
    Floats v{};
    for (std::size_t l = 0; l < count; ++l) v[l] = p[l];
    return v;
#endif
}

inline void store_partial(float* p, std::size_t count, Floats v) {
    if (count == float_lanes) return simd::store<float, simd::wide>(p, v);
#if defined(__AVX512F__)
    simd::store_first(p, static_cast<unsigned>(count), v);
#elif defined(__AVX2__)
    _mm256_maskstore_ps(p, first_lanes(count), reinterpret_cast<__m256>(v));
#else
    for (std::size_t l = 0; l < count; ++l) p[l] = v[l];
#endif
}
#endif

}  // namespace metafast::fast
