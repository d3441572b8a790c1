// Meta-SGD for one task (Li et al. 2017): adaptation theta' = theta - alpha * grad L_S, and the
// exact gradient of the query loss after J such steps with respect to theta and alpha, by a
// reverse pass of Hessian-vector products (docs/math.md, section 1). alpha is one vector for
// every step, or one per step (alpha_j at step j, as MAML++'s per-step learning rates); MAML
// is the same with alpha fixed, its gradient not computed. Written once for every network
// (network.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/backprop.hpp"
#include "metafast/cancellation.hpp"
#include "metafast/convnet.hpp"
#include "metafast/hvp.hpp"
#include "metafast/losses.hpp"
#include "metafast/network.hpp"
#include "metafast/task_batch.hpp"

namespace metafast {

struct MetaSgdConfig {
    Loss loss = Loss::mse;
    std::size_t inner_steps = 1;
    bool first_order = false;
    bool alpha_per_step = false;  // alpha holds inner_steps vectors, alpha_j for step j
    bool learn_alpha = true;      // false: MAML, alpha fixed and no gradient for it
    double clip_grad_norm = 0.0;  // > 0: the meta-gradient's norm is clipped to it before the update

    // Vectors of num_params values alpha holds.
    std::size_t alpha_vectors() const { return alpha_per_step ? inner_steps : 1; }
    // alpha_j's offset in alpha, in vectors: steps beyond those of meta-training reuse the last.
    std::size_t alpha_at(std::size_t step) const { return alpha_per_step ? std::min(step, inner_steps - 1) : 0; }
};

// Per-thread scratch for one task at a time.
template <class Net, class T>
struct MetaSgdWorkspace {
    Workspace<Net, T> network;  // the support passes
    Workspace<Net, T> query;    // the query pass, so that `network` keeps the last support forward pass
    Buffer<T> thetas;  // theta_0 .. theta_J, each num_params long, stride(num_params) apart
    Buffer<T> grads;   // g_0 .. g_{J-1}, likewise
    Buffer<T> v, u, hv;

    // transpose_weights(theta) for meta-iteration `iteration` of run `run` (a learner numbers
    // its runs from 1), or null for a network that caches none: every task of a thread in one
    // meta-iteration starts from the same theta, so its weights are transposed once per thread
    // and iteration, not twice per task.
    const T* transposed_theta(const Net& net, const T* theta, std::uint64_t run, std::uint64_t iteration) {
        if constexpr (!Net::caches_transposed_weights) return nullptr;
        else if (theta_t_run != run || theta_t_iteration != iteration) {
            grow(theta_t, net.num_params());
            transpose_weights(net, theta, theta_t.data());
            theta_t_run = run;
            theta_t_iteration = iteration;
        }
        return theta_t.data();
    }

    // Values from one step's vector to the next in thetas and grads.
    static constexpr std::size_t stride(std::size_t params) { return cache_line_stride<T>(params); }

    void reserve(std::size_t params, std::size_t steps) {
        grow(thetas, theta_values(params, steps));
        grow(grads, grad_values(params, steps));
        grow(v, params);
        grow(u, params);
        grow(hv, params);
    }

    // Bytes one thread's workspace takes for `steps` inner steps on tasks of up to `rows` rows
    // (support or query): what reserve, the two network workspaces and the transposed theta allocate.
    static std::size_t bytes(const Net& net, std::size_t steps, std::size_t rows) {
        const std::size_t n = net.num_params(), transposed = Net::caches_transposed_weights ? n : 0;
        return Workspace<Net, T>::bytes(net, rows, true) + Workspace<Net, T>::bytes(net, rows, false) +
               (theta_values(n, steps) + grad_values(n, steps) + 3 * n + transposed) * sizeof(T);  // v, u, hv
    }

    std::size_t allocated_bytes() const {
        return network.allocated_bytes() + query.allocated_bytes() +
               (thetas.capacity() + grads.capacity() + v.capacity() + u.capacity() + hv.capacity() + theta_t.capacity()) *
                   sizeof(T);
    }

private:
    static std::size_t theta_values(std::size_t params, std::size_t steps) { return (steps + 1) * stride(params); }
    static std::size_t grad_values(std::size_t params, std::size_t steps) {
        return std::max<std::size_t>(steps, 1) * stride(params);
    }

    Buffer<T> theta_t;
    std::uint64_t theta_t_run = 0, theta_t_iteration = 0;  // run 0: none yet

    static void grow(Buffer<T>& x, std::size_t n) { grow_exactly(x, n); }
};

// One inner step: theta_next = theta - alpha * grad L(theta); writes the gradient to grad.
// theta_t: transpose_weights(theta), or null.
template <class Net, class T>
void inner_step(const Net& net, Loss loss, const T* theta, const T* alpha, const T* x,
             std::size_t rows, const Targets<T>& y, Workspace<Net, T>& ws, T* grad, T* theta_next,
             const T* theta_t = nullptr) {
    loss_and_grad(net, theta, x, rows, y, loss, ws, grad, false, theta_t);
    for (std::size_t i = 0; i < net.num_params(); ++i) theta_next[i] = theta[i] - alpha[i] * grad[i];
}

// The query loss at theta_J and its gradients: g_theta = dL/dtheta, g_alpha = dL/dalpha (its
// alpha_vectors() blocks; not written when alpha is not learned). theta_t:
// transpose_weights(theta), or null.
template <class Net, class T>
T task_meta_gradient(const Net& net, const MetaSgdConfig& config, const T* theta, const T* alpha,
                     const TaskView<T>& task, MetaSgdWorkspace<Net, T>& ws, T* g_theta, T* g_alpha,
                     const T* theta_t = nullptr) {
    const std::size_t n = net.num_params(), steps = config.inner_steps, stride = ws.stride(n);
    ws.reserve(n, steps);
    // theta_0 = theta itself; theta_1 .. theta_J in ws.thetas (slot 0 unused).
    auto theta_at = [&](std::size_t j) -> T* { return ws.thetas.data() + j * stride; };
    auto adapted = [&](std::size_t j) -> const T* { return j == 0 ? theta : theta_at(j); };
    T* grads = ws.grads.data();
    auto alpha_of = [&](std::size_t j) { return alpha + config.alpha_at(j) * n; };
    for (std::size_t j = 0; j < steps; ++j)
        inner_step(net, config.loss, adapted(j), alpha_of(j), task.x_support, task.support_rows, task.y_support,
                   ws.network, grads + j * stride, theta_at(j + 1), j == 0 ? theta_t : nullptr);

    // v_J = grad L_Q(theta_J); for j = J-1..0: g_alpha_j -= g_j * v_{j+1} (one alpha for every
    // step: all onto one block), v_j = v_{j+1} - H_j (alpha_j * v_{j+1}). Fused passes: the first
    // write of a block writes instead of adding to zeros (the same bits), and the last step
    // writes v_0 straight to g_theta.
    T* v = ws.v.data();
    const T value = loss_and_grad(net, adapted(steps), task.x_query, task.query_rows, task.y_query, config.loss,
                                  ws.query, v);
    if (g_alpha && steps == 0) std::fill(g_alpha, g_alpha + config.alpha_vectors() * n, T(0));
    T* u = ws.u.data();
    const T* hv = ws.hv.data();
    for (std::size_t j = steps; j-- > 0;) {
        const T* g = grads + j * stride;
        const T* a = alpha_of(j);
        const bool first = config.alpha_per_step || j + 1 == steps;  // this block's first write
        T* ga = g_alpha ? g_alpha + config.alpha_at(j) * n : nullptr;
        if (ga)
            for (std::size_t i = 0; i < n; ++i) ga[i] = (first ? T(0) : ga[i]) - g[i] * v[i];
        if (config.first_order) continue;
        for (std::size_t i = 0; i < n; ++i) u[i] = a[i] * v[i];
        // The last inner step's forward pass (j = J - 1) is still in ws.network.
        hvp(net, adapted(j), task.x_support, task.support_rows, task.y_support, config.loss, u, ws.network, ws.hv.data(),
            static_cast<T*>(nullptr), false, j + 1 == steps, j == 0 ? theta_t : nullptr);
        T* next = j == 0 ? g_theta : v;
        for (std::size_t i = 0; i < n; ++i) next[i] = v[i] - hv[i];
    }
    if (steps == 0 || config.first_order) std::copy(v, v + n, g_theta);
    return value;
}

// theta' after `steps` inner steps on (x, y); written to out (num_params).
template <class Net, class T>
void adapt(const Net& net, const MetaSgdConfig& config, const T* theta, const T* alpha, std::size_t steps,
           const T* x, std::size_t rows, const Targets<T>& y, MetaSgdWorkspace<Net, T>& ws, T* out) {
    const std::size_t n = net.num_params();
    ws.reserve(n, 1);
    std::copy(theta, theta + n, out);
    for (std::size_t s = 0; s < steps; ++s) {
        cancellation::throw_if_cancelled();
        inner_step(net, config.loss, out, alpha + config.alpha_at(s) * n, x, rows, y, ws.network, ws.grads.data(),
                   ws.thetas.data());
        std::copy(ws.thetas.data(), ws.thetas.data() + n, out);
    }
}

}  // namespace metafast
