// SIMD vector types for the kernels, fast_math, box_muller and the reductions: the compilers'
// vector extensions at the widths of the CPU level being compiled.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// Complete unrolling of a loop with a small constant trip count, before other optimisations.
#if defined(__clang__)
#define METAFAST_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define METAFAST_UNROLL _Pragma("GCC unroll 16")
#else
#define METAFAST_UNROLL
#endif

namespace metafast::simd {

#if defined(__GNUC__) || defined(__clang__)
// Vectors through the compiler's vector extensions: `wide` is 64 bytes where AVX-512 is enabled
// (the avx512 level), 32 with AVX (avx2), else 16 (SSE, NEON): never wider than the registers,
// which GCC would lower through memory, a scalar store per lane. `narrow` (32 bytes with AVX,
// else 16) serves products and transposes. Loads and stores are unaligned (the _u form of the
// intrinsics headers).
template <class T, std::size_t Bytes>
struct VectorOf;
template <>
struct VectorOf<float, 16> {
    typedef float type __attribute__((vector_size(16), may_alias, aligned(1)));
};
template <>
struct VectorOf<double, 16> {
    typedef double type __attribute__((vector_size(16), may_alias, aligned(1)));
};
template <>
struct VectorOf<float, 32> {
    typedef float type __attribute__((vector_size(32), may_alias, aligned(1)));
};
template <>
struct VectorOf<double, 32> {
    typedef double type __attribute__((vector_size(32), may_alias, aligned(1)));
};
template <>
struct VectorOf<float, 64> {
    typedef float type __attribute__((vector_size(64), may_alias, aligned(1)));
};
template <>
struct VectorOf<double, 64> {
    typedef double type __attribute__((vector_size(64), may_alias, aligned(1)));
};
template <std::size_t Bytes>
struct VectorOf<std::uint64_t, Bytes> {
    typedef std::uint64_t type __attribute__((vector_size(Bytes), may_alias, aligned(1)));
};
template <std::size_t Bytes>
struct VectorOf<std::int64_t, Bytes> {
    typedef std::int64_t type __attribute__((vector_size(Bytes), may_alias, aligned(1)));
};
template <std::size_t Bytes>
struct VectorOf<std::uint32_t, Bytes> {
    typedef std::uint32_t type __attribute__((vector_size(Bytes), may_alias, aligned(1)));
};
#if defined(__AVX512F__)
constexpr std::size_t wide = 64, narrow = 32;
#elif defined(__AVX__)
constexpr std::size_t wide = 32, narrow = 32;
#else
constexpr std::size_t wide = 16, narrow = 16;
#endif
template <class T, std::size_t Bytes = narrow>
using vec = typename VectorOf<T, Bytes>::type;
template <class T, std::size_t Bytes = narrow>
constexpr std::size_t lanes = Bytes / sizeof(T);
#define METAFAST_VECTOR_KERNELS 1

template <class T, std::size_t Bytes = narrow>
inline vec<T, Bytes> load(const T* p) { return *reinterpret_cast<const vec<T, Bytes>*>(p); }
template <class T, std::size_t Bytes = narrow>
inline void store(T* p, vec<T, Bytes> v) { *reinterpret_cast<vec<T, Bytes>*>(p) = v; }

#ifdef __AVX512F__
// The first `count` (1 to all) lanes of a 64-byte vector at p, zeros after them; and the way
// back. Masked, so the lanes beyond are neither read nor written.
inline vec<float, 64> load_first(const float* p, unsigned count) {
    return reinterpret_cast<vec<float, 64>>(_mm512_maskz_loadu_ps(__mmask16((1u << count) - 1), p));
}
inline vec<double, 64> load_first(const double* p, unsigned count) {
    return reinterpret_cast<vec<double, 64>>(_mm512_maskz_loadu_pd(__mmask8((1u << count) - 1), p));
}
inline void store_first(float* p, unsigned count, vec<float, 64> v) {
    _mm512_mask_storeu_ps(p, __mmask16((1u << count) - 1), reinterpret_cast<__m512>(v));
}
inline void store_first(double* p, unsigned count, vec<double, 64> v) {
    _mm512_mask_storeu_pd(p, __mmask8((1u << count) - 1), reinterpret_cast<__m512d>(v));
}
// The same for a 32-byte vector (AVX-512VL).
inline vec<float, 32> load_first_narrow(const float* p, unsigned count) {
    return reinterpret_cast<vec<float, 32>>(_mm256_maskz_loadu_ps(__mmask8((1u << count) - 1), p));
}
inline vec<double, 32> load_first_narrow(const double* p, unsigned count) {
    return reinterpret_cast<vec<double, 32>>(_mm256_maskz_loadu_pd(__mmask8((1u << count) - 1), p));
}
inline void store_first(float* p, unsigned count, vec<float, 32> v) {
    _mm256_mask_storeu_ps(p, __mmask8((1u << count) - 1), reinterpret_cast<__m256>(v));
}
inline void store_first(double* p, unsigned count, vec<double, 32> v) {
    _mm256_mask_storeu_pd(p, __mmask8((1u << count) - 1), reinterpret_cast<__m256d>(v));
}
#endif
#endif

}  // namespace metafast::simd
