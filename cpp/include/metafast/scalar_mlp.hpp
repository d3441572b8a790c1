// The MSE gradient of a one-hidden-layer network with one input and one output (1 -> H -> 1,
// identity output: the sine-regression shape) in two fused passes over the rows, for float32.
// The general forward and backward take eleven passes through memory and calls for what is
// here a few vector operations per row; this path does the same operations in the same order
// (each product and sum rounded as there), so it gives the same bits.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "metafast/activations.hpp"
#include "metafast/fast_math.hpp"
#include "metafast/kernels.hpp"
#include "metafast/losses.hpp"
#include "metafast/mlp.hpp"
#include "metafast/mlp_workspace.hpp"

namespace metafast::scalar_mlp {

// Whether the fused path computes this gradient.
template <class T>
bool applies(const Mlp& mlp, Loss loss) {
#ifdef METAFAST_VECTOR_KERNELS
    const Activation hidden = mlp.hidden_activation();
    if (!std::is_same_v<T, float>) return false;
    return mlp.num_layers() == 2 && mlp.input_width() == 1 && mlp.output_width() == 1 && loss == Loss::mse &&
           mlp.output_activation() == Activation::identity &&
           (hidden == Activation::tanh || hidden == Activation::sigmoid || hidden == Activation::relu);
#else
    (void)mlp, (void)loss;
    return false;
#endif
}

#ifdef METAFAST_VECTOR_KERNELS
using fast::Floats, fast::load_partial, fast::store_partial;
constexpr std::size_t L = fast::float_lanes;

// f and f' on vectors, as activate() and multiply_by_derivative() compute them.
template <class F>
Floats value(Floats z) {
    if constexpr (std::is_same_v<F, activation::Relu>) return z > 0.0f ? z : Floats{};
    else return F::value(z);
}

template <class F>
Floats derivative(Floats z, Floats a) {
    if constexpr (std::is_same_v<F, activation::Tanh>) return 1.0f - a * a;
    else if constexpr (std::is_same_v<F, activation::Sigmoid>) return a * (1.0f - a);
    else return z > 0.0f ? Floats{} + 1.0f : Floats{};
}

// What the backward pass reads and writes (g_b0 null without biases).
struct Columns {
    std::size_t hidden, rows;
    const float *x, *delta, *z, *a, *w1;
    float *g_w1, *g_w0, *g_b0;
};

// The backward pass for columns [j0, j0 + V vectors), the last vector cut at `hidden`.
template <class F, std::size_t V>
void backward_columns(const Columns& c, std::size_t j0) {
    const std::size_t last = std::min(L, c.hidden - j0 - (V - 1) * L);  // columns in the last vector
    auto at = [&](const float* p, std::size_t v) {
        return v + 1 < V ? simd::load<float, simd::wide>(p) : load_partial(p, last);
    };
    Floats sum_w1[V] = {}, sum_w0[V] = {}, sum_b0[V] = {};
    for (std::size_t r = 0; r < c.rows; ++r) {
        const float d = c.delta[r];
        const float* zr = c.z + r * c.hidden + j0;
        const float* ar = c.a + r * c.hidden + j0;
        METAFAST_UNROLL
        for (std::size_t v = 0; v < V; ++v) {
            const Floats av = at(ar + v * L, v);
            sum_w1[v] += d * av;
            const Floats g = d * at(c.w1 + j0 + v * L, v) * derivative<F>(at(zr + v * L, v), av);
            sum_w0[v] += c.x[r] * g;
            sum_b0[v] += g;
        }
    }
    METAFAST_UNROLL
    for (std::size_t v = 0; v < V; ++v) {
        const std::size_t j = j0 + v * L, count = v + 1 < V ? L : last;
        store_partial(c.g_w1 + j, count, sum_w1[v]);
        store_partial(c.g_w0 + j, count, sum_w0[v]);
        if (c.g_b0) store_partial(c.g_b0 + j, count, sum_b0[v]);
    }
}

// grad (num_params) of the mean squared error on `rows` rows; z and a (rows x H) and delta
// (rows) are scratch.
template <class F>
void fused_gradient(const Mlp& mlp, const float* theta, const float* x, std::size_t rows, const float* y, float* z,
                   float* a, float* delta, float* grad) {
    const std::size_t hidden = mlp.fan_in(1);
    const bool bias = mlp.bias();
    const float* w0 = theta + mlp.weight_offset(0);
    const float* b0 = theta + mlp.bias_offset(0);
    const float* w1 = theta + mlp.weight_offset(1);
    const float scale = 2.0f / float(rows);

    // Forward, one row at a time: z = x W0 + b0 and a = f(z); then the outputs a W1 + b1 (by
    // the general product, which sums them in its own order) and dL/d(output).
    for (std::size_t r = 0; r < rows; ++r) {
        float* zr = z + r * hidden;
        float* ar = a + r * hidden;
        for (std::size_t j = 0; j < hidden; j += L) {
            const std::size_t count = std::min(L, hidden - j);
            Floats zj{};
            zj += x[r] * load_partial(w0 + j, count);
            if (bias) zj += load_partial(b0 + j, count);
            store_partial(zr + j, count, zj);
            store_partial(ar + j, count, value<F>(zj));
        }
    }
    kernels::gemm_nn(rows, 1, hidden, a, w1, delta, false);
    for (std::size_t r = 0; r < rows; ++r) {
        float out = delta[r];
        if (bias) out += theta[mlp.bias_offset(1)];
        delta[r] = scale * (out - y[r]);
    }

    // Backward, columns of up to four vectors at a time with their sums over the rows in
    // registers: dL/dW1 = a^T delta, dL/dW0 = x^T g and dL/db0 = the sum of g's rows, where
    // g = (delta W1^T) * f'(z).
    const Columns columns{hidden, rows, x, delta, z, a, w1, grad + mlp.weight_offset(1),
                          grad + mlp.weight_offset(0), bias ? grad + mlp.bias_offset(0) : nullptr};
    std::size_t j = 0;
    for (; hidden - j > 4 * L; j += 4 * L) backward_columns<F, 4>(columns, j);  // leaves 1 to 4L columns
    switch ((hidden - j + L - 1) / L) {
        case 4: backward_columns<F, 4>(columns, j); break;
        case 3: backward_columns<F, 3>(columns, j); break;
        case 2: backward_columns<F, 2>(columns, j); break;
        case 1: backward_columns<F, 1>(columns, j); break;
        default: break;
    }
    if (bias) {
        float sum = 0.0f;
        for (std::size_t r = 0; r < rows; ++r) sum += delta[r];
        grad[mlp.bias_offset(1)] = sum;
    }
}
#endif

// The gradient by the fused path (only where applies<T>(mlp, loss)); ws supplies the scratch.
template <class T>
void loss_gradient(const Mlp& mlp, const T* theta, const T* x, std::size_t rows, const T* y, MlpWorkspace<T>& ws,
                   T* grad) {
#ifdef METAFAST_VECTOR_KERNELS
    if constexpr (std::is_same_v<T, float>) {
        ws.reserve(mlp, rows, false);
        visit(mlp.hidden_activation(), [&](auto f) {
            using F = decltype(f);
            if constexpr (!std::is_same_v<F, activation::Identity>)
                fused_gradient<F>(mlp, theta, x, rows, y, ws.z[0].data(), ws.a[0].data(), ws.delta[0].data(), grad);
        });
        return;
    }
#endif
    (void)mlp, (void)theta, (void)x, (void)rows, (void)y, (void)ws, (void)grad;
}

}  // namespace metafast::scalar_mlp
