// Exact Hessian-vector products H v of an MLP loss by Pearlmutter's R-operator
// (docs/math.md, section 2): one forward, one R-forward, one backward and one R-backward pass.
// The passes are separate so that other objectives (the policy-gradient surrogate) can seed
// the R-backward pass with their own delta and R(delta).
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

#include "metafast/activations.hpp"
#include "metafast/backprop.hpp"
#include "metafast/kernels.hpp"
#include "metafast/losses.hpp"
#include "metafast/mlp.hpp"
#include "metafast/mlp_workspace.hpp"

namespace metafast {

// R-forward along direction v (same layout as theta), after forward():
// R(z_l) = R(a_{l-1}) W_l + a_{l-1} U_l + c_l, R(a_l) = f'(z_l) R(z_l). Fills ws.rz and ws.ra.
template <class T>
void r_forward(const Mlp& mlp, const T* theta, const T* x, std::size_t rows, const T* v, MlpWorkspace<T>& ws) {
    const std::size_t layers = mlp.num_layers();
    for (std::size_t l = 0; l < layers; ++l) {
        const std::size_t in = mlp.fan_in(l), out = mlp.fan_out(l);
        const T* input = l == 0 ? x : ws.a[l - 1].data();
        T* rz = ws.rz[l].data();
        kernels::gemm_nn(rows, out, in, input, v + mlp.weight_offset(l), rz, false);
        if (l > 0) kernels::gemm_nn(rows, out, in, ws.ra[l - 1].data(), theta + mlp.weight_offset(l), rz, true);
        if (mlp.bias()) kernels::add_row_vector(rows, out, v + mlp.bias_offset(l), rz);
        if (l + 1 < layers)
            r_forward_through(mlp.activation(l), rows * out, ws.z[l].data(), ws.a[l].data(), rz, ws.ra[l].data());
    }
}

// R-backward from ws.delta[0] = dL/dz_L and ws.rdelta[0] = R(dL/dz_L), after forward() and
// r_forward(): writes the MLP part of H v to hv and, when grad is not null, the gradient.
// theta_t: transpose_weights(theta), or null.
template <class T>
void r_backward(const Mlp& mlp, const T* theta, const T* x, std::size_t rows, const T* v, MlpWorkspace<T>& ws,
                T* hv, T* grad, const T* theta_t = nullptr) {
    T* delta = ws.delta[0].data();
    T* next = ws.delta[1].data();
    T* rdelta = ws.rdelta[0].data();
    T* rnext = ws.rdelta[1].data();
    // R(grad W_l) = R(a_{l-1})^T delta_l + a_{l-1}^T R(delta_l), R(grad b_l) = sum R(delta_l).
    for (std::size_t l = mlp.num_layers(); l-- > 0;) {
        const std::size_t in = mlp.fan_in(l), out = mlp.fan_out(l);
        const T* input = l == 0 ? x : ws.a[l - 1].data();
        T* hv_w = hv + mlp.weight_offset(l);
        kernels::gemm_tn(rows, out, in, input, rdelta, hv_w, false);
        if (l > 0) kernels::gemm_tn(rows, out, in, ws.ra[l - 1].data(), delta, hv_w, true);
        if (mlp.bias()) kernels::column_sums(rows, out, rdelta, hv + mlp.bias_offset(l), false);
        if (grad) {
            kernels::gemm_tn(rows, out, in, input, delta, grad + mlp.weight_offset(l), false);
            if (mlp.bias()) kernels::column_sums(rows, out, delta, grad + mlp.bias_offset(l), false);
        }
        if (l == 0) break;

        // back = delta_l W^T; R(delta_{l-1}) = (R(delta_l) W^T + delta_l U^T) f' + back f'' R(z_{l-1}),
        // with W^T transposed once for the first two products (or taken from theta_t).
        T* back = ws.back.data();
        T* wt = ws.transposed.data();
        if (out == 1) {
            kernels::gemm_nt(rows, in, out, delta, theta + mlp.weight_offset(l), back, false, wt);
            kernels::gemm_nt(rows, in, out, rdelta, theta + mlp.weight_offset(l), rnext, false, wt);
        } else {
            const T* w_t = theta_t ? theta_t + mlp.weight_offset(l) : wt;
            if (!theta_t) kernels::transpose(in, out, theta + mlp.weight_offset(l), wt);
            kernels::gemm_nn(rows, in, out, delta, w_t, back, false);
            kernels::gemm_nn(rows, in, out, rdelta, w_t, rnext, false);
        }
        kernels::gemm_nt(rows, in, out, delta, v + mlp.weight_offset(l), rnext, true, wt);
        const Activation act = mlp.activation(l - 1);
        const T* z = ws.z[l - 1].data();
        const T* a = ws.a[l - 1].data();
        r_backward_through(act, rows * in, z, a, back, ws.rz[l - 1].data(), rnext);
        std::copy(back, back + rows * in, next);
        multiply_by_derivative(act, rows * in, z, a, next);
        std::swap(delta, next);
        std::swap(rdelta, rnext);
    }
}

// Writes H v to hv and, when grad is not null, the gradient to grad; returns the mean loss
// (0 unless want_value). With forward_done, ws already holds forward(theta, x) and it is reused.
// theta_t: transpose_weights(theta), or null.
template <class T>
T hvp(const Mlp& mlp, const T* theta, const T* x, std::size_t rows, const Targets<T>& y,
      Loss loss, const T* v, MlpWorkspace<T>& ws, T* hv, T* grad, bool want_value = true, bool forward_done = false,
      const T* theta_t = nullptr) {
    ws.reserve(mlp, rows, true);  // keeps the contents: a forward pass already there survives
    if (!forward_done) forward(mlp, theta, x, rows, ws);
    r_forward(mlp, theta, x, rows, v, ws);
    const std::size_t last = mlp.num_layers() - 1;
    const T value = loss_of_forward(mlp, rows, y, loss, ws, ws.delta[0].data(), want_value);
    r_seed(loss, mlp.output_activation(), rows, mlp.output_width(), ws.z[last].data(), ws.a[last].data(), y,
           ws.rz[last].data(), ws.rdelta[0].data());
    r_backward(mlp, theta, x, rows, v, ws, hv, grad, theta_t);
    return value;
}

}  // namespace metafast
