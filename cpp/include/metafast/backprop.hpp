// Forward pass, loss, and gradient by backpropagation for an Mlp over a flat parameter vector.
#pragma once

#include <cstddef>
#include <utility>

#include "metafast/activations.hpp"
#include "metafast/kernels.hpp"
#include "metafast/losses.hpp"
#include "metafast/mlp.hpp"
#include "metafast/mlp_workspace.hpp"

namespace metafast {

// Fills ws.z and ws.a for `rows` samples x (rows x input_width); returns the output
// activations (rows x output_width), which live in ws.
template <class T>
const T* forward(const Mlp& mlp, const T* theta, const T* x, std::size_t rows,
                 MlpWorkspace<T>& ws) {
    const T* input = x;
    for (std::size_t l = 0; l < mlp.num_layers(); ++l) {
        const std::size_t in = mlp.fan_in(l), out = mlp.fan_out(l);
        T* z = ws.z[l].data();
        kernels::gemm_nn(rows, out, in, input, theta + mlp.weight_offset(l), z, false);
        if (mlp.bias()) kernels::add_row_vector(rows, out, theta + mlp.bias_offset(l), z);
        activate(mlp.activation(l), rows * out, z, ws.a[l].data());
        input = ws.a[l].data();
    }
    return input;
}

// Mean loss of the forward pass already in ws.
template <class T>
T loss_of_forward(const Mlp& mlp, std::size_t rows, const Targets<T>& y, Loss loss,
                  MlpWorkspace<T>& ws, T* delta, bool want_value = true) {
    const std::size_t last = mlp.num_layers() - 1;
    return loss_and_seed(loss, mlp.output_activation(), rows, mlp.output_width(),
                         ws.z[last].data(), ws.a[last].data(), y, delta, want_value);
}

// The output layer's pre-activations of the forward pass in ws (rows x output_width).
template <class T>
const T* logits(const Mlp& mlp, const MlpWorkspace<T>& ws) {
    return ws.z[mlp.num_layers() - 1].data();
}

template <class T>
T loss_value(const Mlp& mlp, const T* theta, const T* x, std::size_t rows, const Targets<T>& y,
             Loss loss, MlpWorkspace<T>& ws) {
    ws.reserve(mlp, rows, false);
    forward(mlp, theta, x, rows, ws);
    return loss_of_forward<T>(mlp, rows, y, loss, ws, nullptr);
}

// Writes W_l^T for every layer l > 0 with more than one output to out (theta's layout): the
// products with W^T that backpropagation needs, transposed once for several passes at theta.
template <class T>
void transpose_weights(const Mlp& mlp, const T* theta, T* out) {
    for (std::size_t l = 1; l < mlp.num_layers(); ++l)
        if (mlp.fan_out(l) > 1)
            kernels::transpose(mlp.fan_in(l), mlp.fan_out(l), theta + mlp.weight_offset(l), out + mlp.weight_offset(l));
}

// delta_l W_l^T (rows x fan_in(l)) to out: from theta_t (transpose_weights of theta) when it is
// not null, else through ws.transposed. The same bits either way.
template <class T>
void times_weights_transposed(const Mlp& mlp, std::size_t l, const T* theta, const T* theta_t, std::size_t rows,
                              const T* delta, T* out, MlpWorkspace<T>& ws) {
    const std::size_t in = mlp.fan_in(l), out_width = mlp.fan_out(l);
    if (theta_t && out_width > 1)
        kernels::gemm_nn(rows, in, out_width, delta, theta_t + mlp.weight_offset(l), out, false);
    else
        kernels::gemm_nt(rows, in, out_width, delta, theta + mlp.weight_offset(l), out, false, ws.transposed.data());
}

// Backpropagates ws.delta[0] = dL/dz_L through the forward pass in ws, writing the
// gradient (num_params) to grad. theta_t: transpose_weights(theta), or null.
template <class T>
void backward(const Mlp& mlp, const T* theta, const T* x, std::size_t rows, MlpWorkspace<T>& ws,
              T* grad, const T* theta_t = nullptr) {
    T* delta = ws.delta[0].data();
    T* next = ws.delta[1].data();
    for (std::size_t l = mlp.num_layers(); l-- > 0;) {
        const std::size_t in = mlp.fan_in(l), out = mlp.fan_out(l);
        const T* input = l == 0 ? x : ws.a[l - 1].data();
        kernels::gemm_tn(rows, out, in, input, delta, grad + mlp.weight_offset(l), false);
        if (mlp.bias()) kernels::column_sums(rows, out, delta, grad + mlp.bias_offset(l), false);
        if (l == 0) break;
        times_weights_transposed(mlp, l, theta, theta_t, rows, delta, next, ws);
        multiply_by_derivative(mlp.activation(l - 1), rows * in, ws.z[l - 1].data(),
                               ws.a[l - 1].data(), next);
        std::swap(delta, next);
    }
}

// Mean loss over `rows` samples (0 unless want_value) and its gradient with respect to theta
// (theta_t: transpose_weights(theta), or null).
template <class T>
T loss_and_grad(const Mlp& mlp, const T* theta, const T* x, std::size_t rows,
                const Targets<T>& y, Loss loss, MlpWorkspace<T>& ws, T* grad, bool want_value = true,
                const T* theta_t = nullptr) {
    ws.reserve(mlp, rows, false);
    forward(mlp, theta, x, rows, ws);
    const T value = loss_of_forward(mlp, rows, y, loss, ws, ws.delta[0].data(), want_value);
    backward(mlp, theta, x, rows, ws, grad, theta_t);
    return value;
}

}  // namespace metafast
