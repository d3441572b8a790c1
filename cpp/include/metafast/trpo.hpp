// TRPO's meta-update for Meta-SGD in RL (docs/math.md, section 4, "TRPO's meta-update"), per
// task: the adapted policy of a candidate [theta, alpha] on the task's fixed inner samples,
// the importance-weighted surrogate and the mean KL divergence from the policy that sampled the task's
// post-adaptation rollout, and the Fisher-vector product J^T F J v of that KL through the
// inner steps. The learner (rl_learner.hpp) sums them over the task tree and runs the
// conjugate gradient and the line search.
#pragma once

#include <cmath>
#include <cstddef>

#include "metafast/buffer.hpp"
#include "metafast/cancellation.hpp"
#include "metafast/hvp.hpp"
#include "metafast/mlp.hpp"
#include "metafast/policy.hpp"
#include "metafast/rl.hpp"

namespace metafast {

// The search's settings; the defaults are MAML's (rllab's ConjugateGradientOptimizer).
struct TrpoConfig {
    double max_kl = 0.01;            // the trust region: mean KL of the adapted policies
    std::size_t cg_iterations = 10;  // conjugate-gradient iterations for F x = g
    double cg_damping = 1e-5;        // F + damping I
    std::size_t line_search_steps = 15;
    double line_search_ratio = 0.8;  // each backtrack shrinks the step by this factor
};

struct SurrogateAndKl {
    double surrogate;  // -sum_t w_t pi(a_t | s_t) / pi_old(a_t | s_t)
    double kl;         // mean over the states of KL(pi_old(. | s) || pi(. | s))
};

// The line search's test: a step is taken when its surrogate is finite and below the current
// one and the mean KL of the adapted policies is within max_kl.
inline bool trpo_step_accepted(double surrogate_before, const SurrogateAndKl& after, double max_kl) {
    return std::isfinite(after.surrogate) && std::isfinite(after.kl) && after.surrogate < surrogate_before &&
           after.kl <= max_kl;
}

// One task's state between the passes of a TRPO meta-iteration: its adaptation and the mean
// actions of the sampling (old) adapted policy on the post-adaptation states.
template <class T>
struct TrpoTask {
    AdaptationTrace<T> trace;
    Buffer<T> old_mean;  // rows x action dims

    std::size_t allocated_values() const { return trace.allocated_values() + old_mean.capacity(); }
};

// theta_k for [theta, alpha] on the trace's inner samples (theta_{j+1} = theta_j - alpha *
// grad L_j(theta_j)), written to out (q values); at the trace's own [theta, alpha] it is
// trace.path's last row, bit for bit.
template <class T>
void adapted_on_trace(const Mlp& mlp, const T* theta, const T* alpha, const AdaptationTrace<T>& trace,
                      RlWorkspace<T>& ws, T* out) {
    const std::size_t q = mlp.num_params() + mlp.output_width();
    resize_exactly(ws.policy_grad, q);
    std::copy(theta, theta + q, out);
    for (const Samples<T>& s : trace.steps) {
        cancellation::throw_if_cancelled();
        surrogate_gradient(mlp, out, s, ws, ws.policy_grad.data());
        for (std::size_t i = 0; i < q; ++i) out[i] -= alpha[i] * ws.policy_grad[i];
    }
}

// The mean actions of the policy `adapted` on the post-adaptation states, into old_mean.
template <class T>
void record_old_mean(const Mlp& mlp, const T* adapted, TrpoTask<T>& task, RlWorkspace<T>& ws) {
    const Samples<T>& v = task.trace.valid;
    const std::size_t values = v.rows * mlp.output_width();
    ws.mlp.reserve(mlp, v.rows, false);
    const T* mean = forward(mlp, adapted, v.states.data(), v.rows, ws.mlp);
    resize_exactly(task.old_mean, values);
    std::copy(mean, mean + values, task.old_mean.data());
}

// The surrogate and the mean KL of the adapted policy `adapted` (mean network, then log_std)
// on the task's post-adaptation samples; `old_log_std`: the sampling policy's.
template <class T>
SurrogateAndKl surrogate_and_kl(const Mlp& mlp, const T* adapted, const T* old_log_std, const TrpoTask<T>& task,
                                RlWorkspace<T>& ws) {
    const Samples<T>& v = task.trace.valid;
    const std::size_t dims = mlp.output_width();
    const T* log_std = adapted + mlp.num_params();
    ws.mlp.reserve(mlp, v.rows, false);
    const T* mean = forward(mlp, adapted, v.states.data(), v.rows, ws.mlp);
    double surrogate = 0.0, kl = 0.0;
    for (std::size_t t = 0; t < v.rows; ++t) {
        double log_ratio = 0.0;
        for (std::size_t d = 0; d < dims; ++d) {
            const std::size_t i = t * dims + d;
            const double l = double(log_std[d]), l_old = double(old_log_std[d]);
            const double e = double(v.actions[i]) - double(mean[i]);
            const double e_old = double(v.actions[i]) - double(task.old_mean[i]);
            const double iv = std::exp(-2.0 * l), iv_old = std::exp(-2.0 * l_old);
            log_ratio += (e_old * e_old * iv_old - e * e * iv) / 2 + l_old - l;
            // KL = l - l_old + (sigma_old^2 + shift^2) / (2 sigma^2) - 1/2, written to be exactly 0
            // at the old policy and accurate near it (expm1).
            const double shift = double(task.old_mean[i]) - double(mean[i]);
            kl += l - l_old + std::expm1(2.0 * (l_old - l)) / 2 + shift * shift * iv / 2;
        }
        surrogate -= double(v.weights[t]) * std::exp(log_ratio);
    }
    return {surrogate, v.rows > 0 ? kl / double(v.rows) : 0.0};
}

// out = J^T F J v for one task: J = d theta_k / d [theta, alpha] at the trace (forward through
// the inner steps: d_{j+1} = d_j - alpha * H_j d_j - v_alpha * grad_j, without H_j when
// first_order), F the Hessian of the mean KL with respect to the adapted policy at the old
// one (the mean network's Gauss-Newton form J_mu^T diag(1 / sigma^2) J_mu / rows, and 2 per
// log_std), and back through the steps as for the meta-gradient. v and out: 2q values.
template <class T>
void fisher_vector_product(const Mlp& mlp, const RlConfig& config, const T* alpha, const TrpoTask<T>& task,
                           const T* v, RlWorkspace<T>& ws, T* out) {
    const std::size_t q = mlp.num_params() + mlp.output_width(), n = mlp.num_params(), dims = mlp.output_width();
    const AdaptationTrace<T>& trace = task.trace;
    const T* v_alpha = v + q;
    T* d = out;  // the direction through the steps; becomes the theta part
    resize_exactly(ws.u, q);
    resize_exactly(ws.hv, q);
    std::copy(v, v + q, d);
    for (std::size_t j = 0; j < trace.steps.size(); ++j) {
        const T* grad = trace.grads.data() + j * q;
        if (!config.first_order) {
            cancellation::throw_if_cancelled();
            const Samples<T>& s = trace.steps[j];
            surrogate_hvp(mlp, trace.path.data() + j * q, s.states.data(), s.actions.data(), s.weights.data(), s.rows,
                          d, ws.mlp, ws.hv.data());
            for (std::size_t i = 0; i < q; ++i) d[i] -= alpha[i] * ws.hv[i];
        }
        for (std::size_t i = 0; i < q; ++i) d[i] -= v_alpha[i] * grad[i];
    }
    // F d at the adapted policy.
    const Samples<T>& s = trace.valid;
    const T* adapted = trace.path.data() + trace.steps.size() * q;
    const T* log_std = adapted + n;
    ws.mlp.reserve(mlp, s.rows, true);
    forward(mlp, adapted, s.states.data(), s.rows, ws.mlp);
    r_forward(mlp, adapted, s.states.data(), s.rows, d, ws.mlp);
    const T* r_mu = ws.mlp.rz[mlp.num_layers() - 1].data();
    T* delta = ws.mlp.delta[0].data();
    const T scale = s.rows > 0 ? T(1) / T(s.rows) : T(0);
    for (std::size_t t = 0; t < s.rows; ++t)
        for (std::size_t k = 0; k < dims; ++k)
            delta[t * dims + k] = r_mu[t * dims + k] * std::exp(T(-2) * log_std[k]) * scale;
    T* f = ws.u.data();
    backward(mlp, adapted, s.states.data(), s.rows, ws.mlp, f);
    for (std::size_t k = 0; k < dims; ++k) f[n + k] = s.rows > 0 ? T(2) * d[n + k] : T(0);
    std::copy(f, f + q, d);
    through_inner_steps_transposed(mlp, config, alpha, trace, ws, d, out + q);
}

}  // namespace metafast
