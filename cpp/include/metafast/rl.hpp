// Meta-SGD for reinforcement learning on 2D navigation (docs/math.md, section 4): native rollouts of
// a Gaussian policy, generalized advantage estimates on a linear feature baseline, and the
// exact meta-gradient of the policy-gradient surrogate through any number of inner steps.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/backprop.hpp"
#include "metafast/cancellation.hpp"
#include "metafast/mlp.hpp"
#include "metafast/mlp_workspace.hpp"
#include "metafast/nav2d.hpp"
#include "metafast/policy.hpp"
#include "metafast/rng.hpp"

namespace metafast {

struct RlConfig {
    std::size_t trajectories = 20;  // per rollout (the inner and the outer batch alike)
    double gamma = 0.99;
    bool first_order = false;
    bool normalize_advantages = true;  // to mean 0 and standard deviation 1 per batch, as MAML's code does
    std::size_t inner_steps = 1;       // adaptation steps in meta-training, each on a fresh rollout
    double gae_lambda = 1.0;           // 1: returns-to-go minus the baseline; below 1, GAE(lambda)
};

// The samples of one batch of trajectories, in trajectory-major order, with the surrogate's
// weights A_t / N, and the batch's mean undiscounted return.
template <class T>
struct Samples {
    Buffer<T> states, actions, weights;
    std::size_t rows = 0;
    double mean_return = 0.0;
};

// What one task's adaptation in meta-training leaves for its meta-gradient: the rollout of
// each inner step, theta_j and the surrogate's gradient at it, and the rollout after them.
template <class T>
struct AdaptationTrace {
    std::vector<Samples<T>> steps;  // the rollout of each inner step
    Samples<T> valid;               // the rollout of the adapted policy
    Buffer<T> path, grads;          // theta_j and the gradient at it, for each inner step j (path: k + 1)

    std::size_t allocated_values() const {
        std::size_t reals = path.capacity() + grads.capacity() + valid.states.capacity() + valid.actions.capacity() +
                            valid.weights.capacity();
        for (const Samples<T>& s : steps) reals += s.states.capacity() + s.actions.capacity() + s.weights.capacity();
        return reals;
    }
};

// Scratch for rollouts and the baseline, per thread.
template <class T>
struct RlWorkspace {
    MlpWorkspace<T> mlp;
    std::vector<double> positions, rewards, returns, features, values;
    Buffer<T> observations, states, actions;
    std::vector<std::size_t> lengths;
    std::vector<char> active;
    Samples<T> train;
    AdaptationTrace<T> trace;  // meta-training's task; trace.valid also scores evaluations
    Buffer<T> u, hv;
    Buffer<T> policy, policy_grad;  // a policy being adapted and its gradient (evaluate, adapt)

    // Bytes one thread's workspace takes for rollouts of `trajectories` trajectories of up to
    // `horizon` steps, `inner_steps` adaptation steps (each keeping its samples) and the rollout
    // after them: what rollout(), rl_task_meta_gradient and evaluation's adaptation allocate.
    static std::size_t bytes(const Mlp& mlp, std::size_t trajectories, std::size_t horizon, std::size_t inner_steps) {
        const std::size_t n = trajectories, rows = rollout_rows(n, horizon), dims = 2;
        const std::size_t q = mlp.num_params() + mlp.output_width();
        const std::size_t doubles = n * dims + rows + 10 * rows;  // positions, rewards; returns, 8 features, values
        const std::size_t values = n * dims + 2 * rows * dims       // observations; states and actions
                                   + (inner_steps + 2) * samples_values(rows, dims)  // each step's, valid and train
                                   + (2 * inner_steps + 1) * q + 4 * q;  // path, grads; u, hv, policy, policy_grad
        return MlpWorkspace<T>::bytes(mlp, std::max(n, rows), true) + doubles * sizeof(double) + values * sizeof(T) +
               n * (sizeof(char) + sizeof(std::size_t)) + (inner_steps + 1) * sizeof(Samples<T>);
    }

    // The most rows a rollout of n trajectories of `horizon` steps yields.
    static std::size_t rollout_rows(std::size_t n, std::size_t horizon) { return n * horizon; }
    // Values of one rollout's samples of `rows` rows: states and actions (dims each), weights.
    static std::size_t samples_values(std::size_t rows, std::size_t dims) { return 2 * rows * dims + rows; }

    std::size_t allocated_bytes() const {
        const std::size_t reals = observations.capacity() + states.capacity() + actions.capacity() + u.capacity() +
                                  hv.capacity() + policy.capacity() + policy_grad.capacity() + train.states.capacity() +
                                  train.actions.capacity() + train.weights.capacity() + trace.allocated_values();
        const std::size_t doubles = positions.capacity() + rewards.capacity() + returns.capacity() + features.capacity() +
                                    values.capacity();
        return mlp.allocated_bytes() + reals * sizeof(T) + doubles * sizeof(double) +
               lengths.capacity() * sizeof(std::size_t) + active.capacity() + trace.steps.capacity() * sizeof(Samples<T>);
    }
};

namespace detail {

constexpr std::size_t baseline_features = 8;

// MAML's linear feature baseline: [x, y, x^2, y^2, tau, tau^2, tau^3, 1] with tau = t / 100.
inline void baseline_row(const double* state, std::size_t t, double* f) {
    const double tau = double(t) / 100.0;
    f[0] = state[0];
    f[1] = state[1];
    f[2] = state[0] * state[0];
    f[3] = state[1] * state[1];
    f[4] = tau;
    f[5] = tau * tau;
    f[6] = tau * tau * tau;
    f[7] = 1.0;
}

// Solves (A + reg I) w = b for the symmetric positive semi-definite 8 x 8 matrix A by
// Cholesky, raising reg tenfold (from 1e-5, as MAML's code does) until it succeeds.
inline void ridge_solve(const double* A, const double* b, double* w) {
    constexpr std::size_t k = baseline_features;
    for (double reg = 1e-5; reg < 1e3; reg *= 10) {
        double L[k * k] = {};
        bool ok = true;
        for (std::size_t i = 0; i < k && ok; ++i)
            for (std::size_t j = 0; j <= i; ++j) {
                double sum = A[i * k + j] + (i == j ? reg : 0.0);
                for (std::size_t p = 0; p < j; ++p) sum -= L[i * k + p] * L[j * k + p];
                if (i == j) {
                    if (!(sum > 0)) { ok = false; break; }
                    L[i * k + i] = std::sqrt(sum);
                } else {
                    L[i * k + j] = sum / L[j * k + j];
                }
            }
        if (!ok) continue;
        double y[k];
        for (std::size_t i = 0; i < k; ++i) {
            double sum = b[i];
            for (std::size_t p = 0; p < i; ++p) sum -= L[i * k + p] * y[p];
            y[i] = sum / L[i * k + i];
        }
        for (std::size_t i = k; i-- > 0;) {
            double sum = y[i];
            for (std::size_t p = i + 1; p < k; ++p) sum -= L[p * k + i] * w[p];
            w[i] = sum / L[i * k + i];
        }
        return;
    }
    std::fill(w, w + k, 0.0);  // a baseline of zero: plain returns
}

}  // namespace detail

// Samples `config.trajectories` trajectories of the policy theta (mean network, then log_std)
// toward `goal`, and turns them into surrogate samples: returns-to-go minus the fitted
// baseline, divided by the number of trajectories. Noise is drawn for every trajectory at every
// step, finished or not, so the stream never depends on when episodes end.
template <class T>
void rollout(const Mlp& mlp, const Navigation2D& env, const RlConfig& config, const T* theta, const double* goal,
             CounterRng& rng, RlWorkspace<T>& ws, Samples<T>& out) {
    const std::size_t n = config.trajectories, horizon = env.horizon, dims = 2;
    const T* log_std = theta + mlp.num_params();
    ws.positions.assign(n * dims, 0.0);
    ws.active.assign(n, 1);
    ws.lengths.assign(n, 0);
    const std::size_t most = RlWorkspace<T>::rollout_rows(n, horizon);
    resize_exactly(ws.rewards, most);
    resize_exactly(ws.observations, n * dims);
    resize_exactly(ws.states, most * dims);
    resize_exactly(ws.actions, most * dims);
    ws.mlp.reserve(mlp, std::max(n, most), true);
    std::size_t running = n;
    for (std::size_t t = 0; t < horizon && running > 0; ++t) {
        cancellation::throw_if_cancelled();  // a long rollout stops within a step on Ctrl-C
        for (std::size_t i = 0; i < n * dims; ++i) ws.observations[i] = T(ws.positions[i]);
        const T* mean = forward(mlp, theta, ws.observations.data(), n, ws.mlp);
        for (std::size_t i = 0; i < n; ++i) {
            double action[2];
            for (std::size_t d = 0; d < dims; ++d)
                action[d] = double(mean[i * dims + d]) + std::exp(double(log_std[d])) * rng.normal();
            if (!ws.active[i]) continue;
            const std::size_t slot = (i * horizon + t) * dims;
            for (std::size_t d = 0; d < dims; ++d) {
                ws.states[slot + d] = ws.observations[i * dims + d];
                ws.actions[slot + d] = T(action[d]);
            }
            bool done = false;
            ws.rewards[i * horizon + t] = env.step(ws.positions.data() + i * dims, action, goal, done);
            ws.lengths[i] = t + 1;
            if (done) {
                ws.active[i] = 0;
                --running;
            }
        }
    }

    // Returns-to-go, the baseline's normal equations, and the mean return.
    constexpr std::size_t k = detail::baseline_features;
    std::size_t rows = 0;
    for (std::size_t i = 0; i < n; ++i) rows += ws.lengths[i];
    resize_exactly(ws.returns, rows);
    resize_exactly(ws.features, rows * k);
    double normal[k * k] = {}, rhs[k] = {}, total = 0.0;
    std::size_t row = 0;
    for (std::size_t i = 0; i < n; ++i) {
        double future = 0.0;
        for (std::size_t t = ws.lengths[i]; t-- > 0;) {
            future = ws.rewards[i * horizon + t] + config.gamma * future;
            ws.returns[row + t] = future;
            total += ws.rewards[i * horizon + t];
        }
        for (std::size_t t = 0; t < ws.lengths[i]; ++t) {
            const std::size_t slot = (i * horizon + t) * dims;
            const double state[2] = {double(ws.states[slot]), double(ws.states[slot + 1])};
            double* f = ws.features.data() + (row + t) * k;
            detail::baseline_row(state, t, f);
            for (std::size_t a = 0; a < k; ++a) {
                rhs[a] += f[a] * ws.returns[row + t];
                for (std::size_t b = 0; b < k; ++b) normal[a * k + b] += f[a] * f[b];
            }
        }
        row += ws.lengths[i];
    }
    double w[k];
    detail::ridge_solve(normal, rhs, w);

    // Advantages (in ws.returns): returns-to-go minus the baseline, or with gae_lambda < 1
    // GAE's sum of (gamma lambda)^l delta_{t+l}, delta_t = r_t + gamma b_{t+1} - b_t (b = 0 after
    // the last step, as the papers' code pads it); standardised when asked, then weights A_t / N.
    resize_exactly(ws.values, rows);
    for (std::size_t r = 0; r < rows; ++r) {
        double baseline = 0.0;
        for (std::size_t a = 0; a < k; ++a) baseline += ws.features[r * k + a] * w[a];
        ws.values[r] = baseline;
    }
    if (config.gae_lambda < 1.0) {
        const double decay = config.gamma * config.gae_lambda;
        row = 0;
        for (std::size_t i = 0; i < n; ++i) {
            double advantage = 0.0, next_value = 0.0;
            for (std::size_t t = ws.lengths[i]; t-- > 0;) {
                const double value = ws.values[row + t];
                advantage = ws.rewards[i * horizon + t] + config.gamma * next_value - value + decay * advantage;
                ws.returns[row + t] = advantage;
                next_value = value;
            }
            row += ws.lengths[i];
        }
    } else {
        for (std::size_t r = 0; r < rows; ++r) ws.returns[r] -= ws.values[r];
    }
    double mean = 0.0, square = 0.0;
    for (std::size_t r = 0; r < rows; ++r) {
        mean += ws.returns[r];
        square += ws.returns[r] * ws.returns[r];
    }
    double shift = 0.0, scale = 1.0;
    if (config.normalize_advantages && rows > 0) {
        shift = mean / double(rows);
        scale = 1.0 / (std::sqrt(std::max(square / double(rows) - shift * shift, 0.0)) + 1e-8);
    }
    out.rows = rows;
    out.mean_return = total / double(n);
    resize_exactly(out.states, rows * dims);
    resize_exactly(out.actions, rows * dims);
    resize_exactly(out.weights, rows);
    row = 0;
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t t = 0; t < ws.lengths[i]; ++t, ++row) {
            const std::size_t slot = (i * horizon + t) * dims;
            for (std::size_t d = 0; d < dims; ++d) {
                out.states[row * dims + d] = ws.states[slot + d];
                out.actions[row * dims + d] = ws.actions[slot + d];
            }
            out.weights[row] = T((ws.returns[row] - shift) * scale / double(n));
        }
}

// Gradient of the surrogate on `samples` at theta (mean network, then log_std).
template <class T>
void surrogate_gradient(const Mlp& mlp, const T* theta, const Samples<T>& samples, RlWorkspace<T>& ws, T* grad) {
    surrogate_loss_and_grad(mlp, theta, samples.states.data(), samples.actions.data(), samples.weights.data(),
                            samples.rows, ws.mlp, grad);
}

// The transpose of the adaptation's Jacobian d theta_k / d [theta, alpha] applied to u (in
// theta's layout, a derivative with respect to theta_k; docs/math.md, sections 1 and 4): on
// return u holds the theta part and out_alpha the alpha part. Going back through the steps,
// out_alpha gathers -grad_j * u and u <- u - H_j (alpha * u) (first_order keeps u).
template <class T>
void through_inner_steps_transposed(const Mlp& mlp, const RlConfig& config, const T* alpha,
                                    const AdaptationTrace<T>& trace, RlWorkspace<T>& ws, T* u, T* out_alpha) {
    const std::size_t q = mlp.num_params() + mlp.output_width();
    resize_exactly(ws.u, q);
    resize_exactly(ws.hv, q);
    std::fill(out_alpha, out_alpha + q, T(0));
    for (std::size_t j = trace.steps.size(); j-- > 0;) {
        const T* grad = trace.grads.data() + j * q;
        for (std::size_t i = 0; i < q; ++i) out_alpha[i] -= grad[i] * u[i];
        if (config.first_order) continue;
        cancellation::throw_if_cancelled();
        for (std::size_t i = 0; i < q; ++i) ws.u[i] = alpha[i] * u[i];
        const Samples<T>& s = trace.steps[j];
        surrogate_hvp(mlp, trace.path.data() + j * q, s.states.data(), s.actions.data(), s.weights.data(), s.rows,
                      ws.u.data(), ws.mlp, ws.hv.data());
        for (std::size_t i = 0; i < q; ++i) u[i] -= ws.hv[i];
    }
}

// One task: for each inner step j, a rollout at theta_j and theta_{j+1} = theta_j - alpha * grad_j;
// a fresh rollout at the adapted theta_k; then the exact meta-gradient of its surrogate back
// through the steps on their fixed samples (docs/math.md, sections 1 and 4): g_alpha gathers
// -grad_j * g, and g <- g - H_j (alpha * g) (first_order keeps g). Returns the mean return of
// the rollout after adaptation.
template <class T>
double rl_task_meta_gradient(const Mlp& mlp, const Navigation2D& env, const RlConfig& config, const T* theta,
                             const T* alpha, const double* goal, CounterRng& rng, RlWorkspace<T>& ws,
                             AdaptationTrace<T>& trace, T* g_theta, T* g_alpha) {
    const std::size_t q = mlp.num_params() + mlp.output_width(), k = config.inner_steps;
    trace.steps.resize(k);
    resize_exactly(trace.path, (k + 1) * q);
    resize_exactly(trace.grads, k * q);
    std::copy(theta, theta + q, trace.path.data());
    // Ctrl-C is served between the stages too: with long horizons each is a large pass.
    for (std::size_t j = 0; j < k; ++j) {
        const T* at = trace.path.data() + j * q;
        T* grad = trace.grads.data() + j * q;
        T* next = trace.path.data() + (j + 1) * q;
        rollout(mlp, env, config, at, goal, rng, ws, trace.steps[j]);
        cancellation::throw_if_cancelled();
        surrogate_gradient(mlp, at, trace.steps[j], ws, grad);
        for (std::size_t i = 0; i < q; ++i) next[i] = at[i] - alpha[i] * grad[i];
        cancellation::throw_if_cancelled();
    }
    const T* adapted = trace.path.data() + k * q;
    rollout(mlp, env, config, adapted, goal, rng, ws, trace.valid);
    cancellation::throw_if_cancelled();
    surrogate_gradient(mlp, adapted, trace.valid, ws, g_theta);  // g, carried back through the steps
    through_inner_steps_transposed(mlp, config, alpha, trace, ws, g_theta, g_alpha);
    return trace.valid.mean_return;
}

}  // namespace metafast
