// The policy-gradient surrogate of a Gaussian policy (docs/math.md, section 4) and its exact
// Hessian-vector product. The policy is N(mu_theta(s), diag(exp(2 log_std))): an MLP with
// identity output gives the mean, and a state-independent log standard deviation (one per
// action dimension) follows the MLP's parameters in theta.
//
// On fixed samples (s_t, a_t) with weights w_t = A_t / N (advantage over the number of
// trajectories), the surrogate is L = -sum_t w_t log pi(a_t | s_t). With e = a - mu and
// iv = exp(-2 log_std): dL/dmu = -w e iv, dL/dlog_std = -sum_t w (e^2 iv - 1); the R-operator
// seeds are R(dL/dmu) = w iv R(mu) + 2 w e iv R(log_std) and
// R(dL/dlog_std) = sum_t 2 w e iv R(mu) + 2 w e^2 iv R(log_std).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "metafast/backprop.hpp"
#include "metafast/hvp.hpp"
#include "metafast/mlp.hpp"
#include "metafast/mlp_workspace.hpp"

namespace metafast {

constexpr double half_log_two_pi = 0.91893853320467274178;

// Surrogate loss and its gradient (MLP parameters, then log_std) on `rows` samples.
template <class T>
T surrogate_loss_and_grad(const Mlp& mlp, const T* theta, const T* states, const T* actions, const T* weights,
                          std::size_t rows, MlpWorkspace<T>& ws, T* grad) {
    ws.reserve(mlp, rows, false);
    const T* mu = forward(mlp, theta, states, rows, ws);
    const std::size_t n = mlp.num_params(), dims = mlp.output_width();
    const T* log_std = theta + n;
    T* delta = ws.delta[0].data();
    T* grad_log_std = grad + n;
    std::fill(grad_log_std, grad_log_std + dims, T(0));
    double loss = 0.0;
    for (std::size_t t = 0; t < rows; ++t)
        for (std::size_t d = 0; d < dims; ++d) {
            const T e = actions[t * dims + d] - mu[t * dims + d];
            const T iv = std::exp(T(-2) * log_std[d]);
            loss += double(weights[t]) * (double(e * e * iv) / 2 + double(log_std[d]) + half_log_two_pi);
            delta[t * dims + d] = -weights[t] * e * iv;
            grad_log_std[d] -= weights[t] * (e * e * iv - T(1));
        }
    backward(mlp, theta, states, rows, ws, grad);
    return T(loss);
}

// H v of the surrogate (v and hv in theta's layout).
template <class T>
void surrogate_hvp(const Mlp& mlp, const T* theta, const T* states, const T* actions, const T* weights,
                   std::size_t rows, const T* v, MlpWorkspace<T>& ws, T* hv) {
    ws.reserve(mlp, rows, true);
    const T* mu = forward(mlp, theta, states, rows, ws);
    r_forward(mlp, theta, states, rows, v, ws);
    const std::size_t n = mlp.num_params(), dims = mlp.output_width();
    const T* log_std = theta + n;
    const T* v_log_std = v + n;
    const T* r_mu = ws.rz[mlp.num_layers() - 1].data();
    T* delta = ws.delta[0].data();
    T* rdelta = ws.rdelta[0].data();
    T* hv_log_std = hv + n;
    std::fill(hv_log_std, hv_log_std + dims, T(0));
    for (std::size_t t = 0; t < rows; ++t)
        for (std::size_t d = 0; d < dims; ++d) {
            const std::size_t i = t * dims + d;
            const T w = weights[t], e = actions[i] - mu[i], iv = std::exp(T(-2) * log_std[d]);
            delta[i] = -w * e * iv;
            rdelta[i] = w * iv * r_mu[i] + T(2) * w * e * iv * v_log_std[d];
            hv_log_std[d] += T(2) * w * e * iv * r_mu[i] + T(2) * w * e * e * iv * v_log_std[d];
        }
    r_backward(mlp, theta, states, rows, v, ws, hv, static_cast<T*>(nullptr));
}

}  // namespace metafast
