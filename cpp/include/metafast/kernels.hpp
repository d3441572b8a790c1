// Small dense row-major matrix kernels sized for few-shot work (rows 1-1000, widths 1-512).
// Every element of a product is a sum over the inner dimension in index order, whatever the
// path, so results are reproducible bit for bit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "metafast/simd.hpp"



namespace metafast::kernels {

namespace detail {

#if defined(__GNUC__) || defined(__clang__)
using simd::lanes, simd::load, simd::narrow, simd::store, simd::vec, simd::wide;
#ifdef __AVX512F__
using simd::load_first, simd::load_first_narrow, simd::store_first;
#endif

#if defined(__AVX__)
// Transposes the 8 x 8 block of floats at A (row stride lda) into At (row stride ldt): three
// rounds of shuffles (pairs of elements, pairs of pairs, halves), the unpack/shuffle/permute
// network of the AVX transpose, in the compilers' portable __builtin_shufflevector.
inline void transpose_block(const float* A, std::size_t lda, float* At, std::size_t ldt) {
    using V = vec<float>;
    V r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = load(A + i * lda);
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; ++j) {
            r[i + 2 * j] = __builtin_shufflevector(t[i + j], t[i + j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            r[i + 2 * j + 1] = __builtin_shufflevector(t[i + j], t[i + j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int i = 0; i < 4; ++i) {
        store(At + i * ldt, __builtin_shufflevector(r[i], r[i + 4], 0, 1, 2, 3, 8, 9, 10, 11));
        store(At + (i + 4) * ldt, __builtin_shufflevector(r[i], r[i + 4], 4, 5, 6, 7, 12, 13, 14, 15));
    }
}

// The same for a 4 x 4 block of doubles.
inline void transpose_block(const double* A, std::size_t lda, double* At, std::size_t ldt) {
    using V = vec<double>;
    V r[4], t[4];
    for (int i = 0; i < 4; ++i) r[i] = load(A + i * lda);
    for (int i = 0; i < 4; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 4, 2, 6);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 1, 5, 3, 7);
    }
    for (int i = 0; i < 2; ++i) {
        store(At + i * ldt, __builtin_shufflevector(t[i], t[i + 2], 0, 1, 4, 5));
        store(At + (i + 2) * ldt, __builtin_shufflevector(t[i], t[i + 2], 2, 3, 6, 7));
    }
}
#else
// 16-byte vectors: the 4 x 4 block of floats (pairs of elements, then halves), and the 2 x 2
// block of doubles.
inline void transpose_block(const float* A, std::size_t lda, float* At, std::size_t ldt) {
    using V = vec<float>;
    V r[4], t[4];
    for (int i = 0; i < 4; ++i) r[i] = load(A + i * lda);
    for (int i = 0; i < 4; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 4, 1, 5);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 6, 3, 7);
    }
    for (int i = 0; i < 2; ++i) {
        store(At + (2 * i) * ldt, __builtin_shufflevector(t[i], t[i + 2], 0, 1, 4, 5));
        store(At + (2 * i + 1) * ldt, __builtin_shufflevector(t[i], t[i + 2], 2, 3, 6, 7));
    }
}

inline void transpose_block(const double* A, std::size_t lda, double* At, std::size_t ldt) {
    using V = vec<double>;
    const V r0 = load(A), r1 = load(A + lda);
    store(At, __builtin_shufflevector(r0, r1, 0, 2));
    store(At + ldt, __builtin_shufflevector(r0, r1, 1, 3));
}
#endif


// C[R rows, W vectors of columns] (+)= A B over depth k, with A's element (i, p) at
// A[i * a_row + p * a_depth] and B's (p, j) at B[p * ldb + j]. The R x W accumulators stay in
// registers for the whole depth loop: the register blocking that keeps small products near
// the FMA peak instead of bound by loads and stores of C. With Masked (AVX-512), the last
// vector has only `tail` columns; with NarrowTail as well, it is a vector of half the width
// (tail <= half its lanes): the same operations on each column, so the same bits, in half the
// work where a 512-bit instruction takes two 256-bit units (AMD Zen 4: W4's 40 columns are
// 16 + 16 + 8).
template <int R, int W, std::size_t Bytes, bool Masked = false, bool NarrowTail = false, class T>
inline void block(std::size_t k, const T* A, std::size_t a_row, std::size_t a_depth, const T* B,
                  std::size_t ldb, T* C, std::size_t ldc, bool accumulate, [[maybe_unused]] unsigned tail = 0) {
    constexpr std::size_t L = lanes<T, Bytes>;
    constexpr int F = W - 1;  // the vectors before the last
    using Full = vec<T, Bytes>;
    using Last = vec<T, NarrowTail ? Bytes / 2 : Bytes>;
    static_assert(Masked || !NarrowTail, "a narrow last vector is a masked one");
    auto load_last = [&](const T* p) -> Last {
#ifdef __AVX512F__
        if constexpr (NarrowTail) return load_first_narrow(p + F * L, tail);
        else if constexpr (Masked) return load_first(p + F * L, tail);
        else
#endif
            return load<T, Bytes>(p + F * L);
    };
    auto store_last = [&](T* p, Last v) {
#ifdef __AVX512F__
        if constexpr (Masked) return store_first(p + F * L, tail, v);
        else
#endif
            store<T, Bytes>(p + F * L, v);
    };
    // The loops over r and w are unrolled before anything else, so that every index into the
    // accumulators is a constant and they live in registers: otherwise GCC keeps a memory copy
    // and stores every accumulator on every step of the depth loop.
    Full acc[R][F > 0 ? F : 1];
    Last last[R];
    METAFAST_UNROLL for (int r = 0; r < R; ++r) {
        METAFAST_UNROLL for (int w = 0; w < F; ++w) acc[r][w] = accumulate ? load<T, Bytes>(C + r * ldc + w * L) : Full{};
        last[r] = accumulate ? load_last(C + r * ldc) : Last{};
    }
    for (std::size_t p = 0; p < k; ++p) {
        Full b[F > 0 ? F : 1];
        METAFAST_UNROLL for (int w = 0; w < F; ++w) b[w] = load<T, Bytes>(B + p * ldb + w * L);
        const Last b_last = load_last(B + p * ldb);
        METAFAST_UNROLL for (int r = 0; r < R; ++r) {
            const T a = A[r * a_row + p * a_depth];
            METAFAST_UNROLL for (int w = 0; w < F; ++w) acc[r][w] += a * b[w];
            last[r] += a * b_last;
        }
    }
    METAFAST_UNROLL for (int r = 0; r < R; ++r) {
        METAFAST_UNROLL for (int w = 0; w < F; ++w) store<T, Bytes>(C + r * ldc + w * L, acc[r][w]);
        store_last(C + r * ldc, last[r]);
    }
}

// sum_p a[p] b[p]: vector partial sums over p (lane l takes p = l mod L), then the lanes and
// the tail in index order. A fixed order, so as reproducible as the sequential sum.
template <class T>
inline T dot(std::size_t k, const T* a, const T* b) {
    constexpr std::size_t L = lanes<T>;
    vec<T> acc{};
    std::size_t p = 0;
    for (; p + L <= k; p += L) acc += load(a + p) * load(b + p);
    T sum = 0;
    for (std::size_t l = 0; l < L; ++l) sum += acc[l];
    for (; p < k; ++p) sum += a[p] * b[p];
    return sum;
}

// y (m) (+)= A x for A (m x k, row stride lda), summed exactly as dot() sums: for whole groups
// of L rows, each row's vector partial sums, then one transpose of the group's L partial-sum
// vectors, so that adding its rows adds up every row's lanes at once (lane 0 first) instead of
// one lane at a time; then each row's tail in index order. Leftover rows go through dot().
template <class T>
void matvec(std::size_t m, std::size_t k, const T* A, std::size_t lda, const T* x, T* y, bool accumulate) {
    constexpr std::size_t L = lanes<T>;
    const std::size_t full = k - k % L;
    alignas(64) T partial[L * L], lane_major[L * L];
    std::size_t i = 0;
    for (; i + L <= m; i += L) {
        vec<T> acc[L] = {};  // the group's rows side by side: independent chains, not one per row
        for (std::size_t p = 0; p < full; p += L) {
            const vec<T> xp = load(x + p);
            METAFAST_UNROLL
            for (std::size_t r = 0; r < L; ++r) acc[r] += load(A + (i + r) * lda + p) * xp;
        }
        for (std::size_t r = 0; r < L; ++r) store(partial + r * L, acc[r]);
        transpose_block(partial, L, lane_major, L);
        vec<T> sum = load(lane_major);
        for (std::size_t l = 1; l < L; ++l) sum += load(lane_major + l * L);
        for (std::size_t r = 0; r < L; ++r) {
            T total = sum[r];
            for (std::size_t p = full; p < k; ++p) total += A[(i + r) * lda + p] * x[p];
            y[i + r] = accumulate ? y[i + r] + total : total;
        }
    }
    for (; i < m; ++i) y[i] = (accumulate ? y[i] : T(0)) + dot(k, A + i * lda, x);
}

// Rows [0, m) of one column panel W vectors wide: four rows at a time, then the last one to
// three rows in one block (each B vector loaded once serves all of them).
template <int W, std::size_t Bytes, bool Masked = false, bool NarrowTail = false, class T>
inline void panel(std::size_t m, std::size_t k, const T* A, std::size_t a_row, std::size_t a_depth,
                  const T* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate, unsigned tail = 0) {
    std::size_t i = 0;
    // Rows five at a time when that leaves no remainder (10, 20, 50 rows: few-shot batches),
    // instead of fours and a latency-bound block of two, where the 5 x W accumulators and W + 1
    // operands fit in the registers (32 with AVX-512, 16 without).
#ifdef __AVX512F__
    constexpr bool five_rows_fit = true;
#else
    constexpr bool five_rows_fit = W <= 2;
#endif
    if (five_rows_fit && m % 5 == 0) {
        for (; i < m; i += 5)
            block<5, W, Bytes, Masked, NarrowTail>(k, A + i * a_row, a_row, a_depth, B, ldb, C + i * ldc, ldc, accumulate, tail);
        return;
    }
    for (; i + 4 <= m; i += 4)
        block<4, W, Bytes, Masked, NarrowTail>(k, A + i * a_row, a_row, a_depth, B, ldb, C + i * ldc, ldc, accumulate, tail);
    A += i * a_row;
    C += i * ldc;
    switch (m - i) {
        case 3: block<3, W, Bytes, Masked, NarrowTail>(k, A, a_row, a_depth, B, ldb, C, ldc, accumulate, tail); break;
        case 2: block<2, W, Bytes, Masked, NarrowTail>(k, A, a_row, a_depth, B, ldb, C, ldc, accumulate, tail); break;
        case 1: block<1, W, Bytes, Masked, NarrowTail>(k, A, a_row, a_depth, B, ldb, C, ldc, accumulate, tail); break;
        default: break;
    }
}
#endif

// The general product C (m x n) (+)= A B with A's element (i, p) at A[i*a_row + p*a_depth]:
// vector panels for as many columns as fill whole vectors, scalar loops for the rest.
template <class T>
void product(std::size_t m, std::size_t n, std::size_t k, const T* A, std::size_t a_row,
             std::size_t a_depth, const T* B, T* C, bool accumulate) {
    std::size_t j = 0;
#ifdef METAFAST_VECTOR_KERNELS
    constexpr std::size_t L = lanes<T>;
    if (n == 1 && a_depth == 1 && k >= L) {  // matrix-vector: dot products along A's rows
        matvec(m, k, A, a_row, B, C, accumulate);
        return;
    }
    constexpr std::size_t WL = lanes<T, wide>;
#ifdef __AVX512F__
    // Panels of four vectors while whole ones remain (a convolution's 64 channels, its patches'
    // 576 columns: each A element loaded serves four vectors, and the 5 x 4 accumulators fit in
    // AVX-512's 32 registers), then of two, and the last 1 to 3 vectors (the last one masked)
    // in one panel: 40 columns take 2.5 vectors' work, not a 32-column panel and a
    // latency-bound 8-column one.
    for (; n - j >= 4 * WL; j += 4 * WL) panel<4, wide>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate);
    for (; n - j > 3 * WL; j += 2 * WL) panel<2, wide>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate);
    if (j == n) return;
    const std::size_t vectors = (n - j + WL - 1) / WL;
    const auto tail = static_cast<unsigned>(n - j - (vectors - 1) * WL);
    // A last vector at most half full as a half-width vector (same bits; less work on Zen 4).
    const bool half_tail = tail <= WL / 2;
    switch (2 * vectors + half_tail) {
        case 7: panel<3, wide, true, true>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate, tail); break;
        case 6: panel<3, wide, true>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate, tail); break;
        case 5: panel<2, wide, true, true>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate, tail); break;
        case 4: panel<2, wide, true>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate, tail); break;
        case 3: panel<1, wide, true, true>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate, tail); break;
        case 2: panel<1, wide, true>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate, tail); break;
        default: break;
    }
    return;
#else
    // Panels of two vectors; an odd count's last three in one panel of three (4 x 3
    // accumulators in 16 registers) instead of a panel of one, whose few accumulators leave the
    // multiply-adds waiting on each other (W4's 40 columns at AVX2: 2 + 3 vectors).
    const std::size_t vectors = (n - j) / WL;
    const std::size_t pairs = vectors % 2 == 1 && vectors >= 3 ? vectors / 2 - 1 : vectors / 2;
    for (std::size_t q = 0; q < pairs; ++q, j += 2 * WL) panel<2, wide>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate);
    if (vectors % 2 == 1 && vectors >= 3) {
        panel<3, wide>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate);
        j += 3 * WL;
    } else if (vectors % 2 == 1) {
        panel<1, wide>(m, k, A, a_row, a_depth, B + j, n, C + j, n, accumulate);
        j += WL;
    }
#endif
#endif
    if (j == n) return;
    for (std::size_t i = 0; i < m; ++i) {
        T* c = C + i * n;
        if (!accumulate) std::fill(c + j, c + n, T(0));
        for (std::size_t p = 0; p < k; ++p) {
            const T a = A[i * a_row + p * a_depth];
            const T* b = B + p * n;
            for (std::size_t q = j; q < n; ++q) c[q] += a * b[q];
        }
    }
}

// s[j] (+)= the sum over rows r = 0 .. m-1, in row order, of weight(r) A[r * n + j], for j in
// [0, n): V vectors of columns at a time with their sums in registers across the rows (summing
// in memory would wait for each row's stores before the next row's loads). With Masked
// (AVX-512), the last vector has only `tail` columns.
template <std::size_t V, bool Masked = false, class T, class Weight>
inline void row_sums_vectors(std::size_t m, std::size_t n, const T* A, Weight weight, T* s, bool accumulate,
                             [[maybe_unused]] unsigned tail = 0) {
    constexpr std::size_t L = lanes<T, wide>;
    auto get = [&](const T* p, [[maybe_unused]] std::size_t v) {
#ifdef __AVX512F__
        if (Masked && v + 1 == V) return load_first(p, tail);
#endif
        return load<T, wide>(p);
    };
    vec<T, wide> acc[V] = {};
    if (accumulate) {
        METAFAST_UNROLL
        for (std::size_t v = 0; v < V; ++v) acc[v] = get(s + v * L, v);
    }
    for (std::size_t r = 0; r < m; ++r) {
        const T w = weight(r);
        METAFAST_UNROLL
        for (std::size_t v = 0; v < V; ++v) acc[v] += w * get(A + r * n + v * L, v);
    }
    METAFAST_UNROLL
    for (std::size_t v = 0; v < V; ++v) {
#ifdef __AVX512F__
        if (Masked && v + 1 == V) {
            store_first(s + v * L, tail, acc[v]);
            continue;
        }
#endif
        store<T, wide>(s + v * L, acc[v]);
    }
}

template <class T, class Weight>
void weighted_row_sums(std::size_t m, std::size_t n, const T* A, Weight weight, T* s, bool accumulate) {
    std::size_t j = 0;
#ifdef METAFAST_VECTOR_KERNELS
    constexpr std::size_t L = lanes<T, wide>;
#ifdef __AVX512F__
    for (; n - j > 4 * L; j += 4 * L) row_sums_vectors<4>(m, n, A + j, weight, s + j, accumulate);
    // The last 1 to 4 vectors in one pass over the rows, the last one masked.
    const auto tail = static_cast<unsigned>(n - j - ((n - j - 1) / L) * L);
    switch ((n - j + L - 1) / L) {
        case 4: row_sums_vectors<4, true>(m, n, A + j, weight, s + j, accumulate, tail); return;
        case 3: row_sums_vectors<3, true>(m, n, A + j, weight, s + j, accumulate, tail); return;
        case 2: row_sums_vectors<2, true>(m, n, A + j, weight, s + j, accumulate, tail); return;
        case 1: row_sums_vectors<1, true>(m, n, A + j, weight, s + j, accumulate, tail); return;
        default: return;
    }
#else
    for (; j + 4 * L <= n; j += 4 * L) row_sums_vectors<4>(m, n, A + j, weight, s + j, accumulate);
    for (; j + L <= n; j += L) row_sums_vectors<1>(m, n, A + j, weight, s + j, accumulate);
#endif
#endif
    if (j == n) return;
    // The last columns row by row (a loop over j, not a reduction over r, so that each
    // product is added as in the vectors above: fused where they fuse).
    if (!accumulate) std::fill(s + j, s + n, T(0));
    for (std::size_t r = 0; r < m; ++r) {
        const T w = weight(r);
        for (std::size_t q = j; q < n; ++q) s[q] += w * A[r * n + q];
    }
}

}  // namespace detail

// C (m x n) = A (m x k) B (k x n), or C += A B when `accumulate`.
template <class T>
void gemm_nn(std::size_t m, std::size_t n, std::size_t k, const T* A, const T* B, T* C, bool accumulate) {
    detail::product(m, n, k, A, k, 1, B, C, accumulate);
}

// C (k x n) = A^T B for A (m x k), B (m x n), or C += A^T B when `accumulate`.
template <class T>
void gemm_tn(std::size_t m, std::size_t n, std::size_t k, const T* A, const T* B, T* C, bool accumulate) {
    if (n == 1) {  // a weighted sum of A's rows: vectorise along them
        detail::weighted_row_sums(m, k, A, [B](std::size_t r) { return B[r]; }, C, accumulate);
        return;
    }
    detail::product(k, n, m, A, 1, k, B, C, accumulate);
}


// At (cols x rows) = A^T for A (rows x cols): vector blocks where they fit, then the edges.
template <class T>
void transpose(std::size_t rows, std::size_t cols, const T* __restrict A, T* __restrict At) {
    std::size_t full_rows = 0, full_cols = 0;
#ifdef METAFAST_VECTOR_KERNELS
    constexpr std::size_t L = detail::lanes<T>;
    full_rows = rows - rows % L;
    full_cols = cols - cols % L;
    for (std::size_t i = 0; i < full_rows; i += L)
        for (std::size_t j = 0; j < full_cols; j += L) detail::transpose_block(A + i * cols + j, cols, At + j * rows + i, rows);
#endif
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = i < full_rows ? full_cols : 0; j < cols; ++j) At[j * rows + i] = A[i * cols + j];
}

// C (m x n) = A (m x k) B^T for B (n x k), or C += A B^T when `accumulate`. With k = 1 it is
// an outer product; otherwise B^T goes to `scratch` (n * k values) and gemm_nn does the rest,
// which beats dot products of rows (their horizontal sums cost more than the transpose).
template <class T>
void gemm_nt(std::size_t m, std::size_t n, std::size_t k, const T* A, const T* B, T* C, bool accumulate,
             T* scratch) {
    if (k == 1) {
        for (std::size_t i = 0; i < m; ++i) {
            const T a = A[i];
            T* __restrict c = C + i * n;
            if (accumulate)
                for (std::size_t j = 0; j < n; ++j) c[j] += a * B[j];
            else
                for (std::size_t j = 0; j < n; ++j) c[j] = a * B[j];
        }
        return;
    }
    transpose(n, k, B, scratch);
    gemm_nn(m, n, k, A, scratch, C, accumulate);
}

// Z[r, :] += b for every row r of Z (m x n).
template <class T>
void add_row_vector(std::size_t m, std::size_t n, const T* __restrict b, T* __restrict Z) {
    for (std::size_t r = 0; r < m; ++r) {
        T* __restrict z = Z + r * n;
        for (std::size_t j = 0; j < n; ++j) z[j] += b[j];
    }
}

// s[j] = sum_r A[r, j] (or += when `accumulate`), summed in row order.
template <class T>
void column_sums(std::size_t m, std::size_t n, const T* A, T* s, bool accumulate) {
    detail::weighted_row_sums(m, n, A, [](std::size_t) { return T(1); }, s, accumulate);
}

}  // namespace metafast::kernels
