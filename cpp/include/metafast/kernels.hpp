// Small dense row-major matrix kernels sized for few-shot work (rows 1-1000, widths 1-512).
// Loops run in a fixed order so every result is reproducible bit for bit.
#pragma once

#include <algorithm>
#include <cstddef>

namespace metafast::kernels {

// C (m x n) = A (m x k) B (k x n), or C += A B when `accumulate`.
// The inner loop runs along rows of B and C, which the compiler vectorises.
template <class T>
void gemm_nn(std::size_t m, std::size_t n, std::size_t k, const T* __restrict A,
             const T* __restrict B, T* __restrict C, bool accumulate) {
    for (std::size_t i = 0; i < m; ++i) {
        T* __restrict c = C + i * n;
        if (!accumulate) std::fill(c, c + n, T(0));
        const T* a = A + i * k;
        for (std::size_t p = 0; p < k; ++p) {
            const T aip = a[p];
            const T* __restrict b = B + p * n;
            for (std::size_t j = 0; j < n; ++j) c[j] += aip * b[j];
        }
    }
}

// C (k x n) = A^T B for A (m x k), B (m x n), or C += A^T B when `accumulate`:
// a sum of outer products of matching rows, taken in row order.
template <class T>
void gemm_tn(std::size_t m, std::size_t n, std::size_t k, const T* __restrict A,
             const T* __restrict B, T* __restrict C, bool accumulate) {
    if (!accumulate) std::fill(C, C + k * n, T(0));
    for (std::size_t r = 0; r < m; ++r) {
        const T* a = A + r * k;
        const T* __restrict b = B + r * n;
        for (std::size_t p = 0; p < k; ++p) {
            const T arp = a[p];
            T* __restrict c = C + p * n;
            for (std::size_t j = 0; j < n; ++j) c[j] += arp * b[j];
        }
    }
}

// At (cols x rows) = A^T for A (rows x cols). Used so that products with a transposed
// weight matrix become gemm_nn, whose inner loop vectorises (a dot product would not,
// without reassociating floating-point sums).
template <class T>
void transpose(std::size_t rows, std::size_t cols, const T* __restrict A, T* __restrict At) {
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < cols; ++j) At[j * rows + i] = A[i * cols + j];
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
void column_sums(std::size_t m, std::size_t n, const T* __restrict A, T* __restrict s,
                 bool accumulate) {
    if (!accumulate) std::fill(s, s + n, T(0));
    for (std::size_t r = 0; r < m; ++r) {
        const T* __restrict a = A + r * n;
        for (std::size_t j = 0; j < n; ++j) s[j] += a[j];
    }
}

}  // namespace metafast::kernels
