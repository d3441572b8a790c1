// Meta-optimizers as small update rules over a flat vector with explicit state
// (math.md section 3 gives Adam's formula).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "metafast/parallel.hpp"

namespace metafast {

enum class Optimizer { sgd, adam };

inline Optimizer parse_optimizer(std::string_view name, std::string_view argument) {
    if (name == "sgd") return Optimizer::sgd;
    if (name == "adam") return Optimizer::adam;
    throw std::invalid_argument(std::string(argument) + " must be 'sgd' or 'adam', got '" +
                                std::string(name) + "'");
}

struct OptimizerConfig {
    Optimizer kind = Optimizer::adam;
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
};

// Adam's moments and the number of updates taken so far.
template <class T>
struct OptimizerState {
    std::vector<T> m, v;
    std::int64_t step = 0;

    void reset(std::size_t n) {
        m.assign(n, T(0));
        v.assign(n, T(0));
        step = 0;
    }
};

template <class T>
void sgd_update(std::size_t n, T lr, const T* grad, T* params) {
    for (std::size_t i = 0; i < n; ++i) params[i] -= lr * grad[i];
}

// Adam on elements [first, last) with the bias corrections c1 = 1 - beta1^t, c2 = 1 - beta2^t:
// params -= lr * (m / c1) / (sqrt(v / c2) + eps).
template <class T>
void adam_elements(std::size_t first, std::size_t last, const OptimizerConfig& config, T c1, T c2,
                   const T* __restrict grad, T* __restrict m, T* __restrict v, T* __restrict params) {
    const T b1 = T(config.beta1), b2 = T(config.beta2), lr = T(config.lr), eps = T(config.eps);
    for (std::size_t i = first; i < last; ++i) {
        m[i] = b1 * m[i] + (T(1) - b1) * grad[i];
        v[i] = b2 * v[i] + (T(1) - b2) * grad[i] * grad[i];
        params[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
    }
}

// One update of the meta-optimizer (Adam with t counted from 1, or SGD), elementwise, so the
// elements may be split among `threads` without changing any result.
template <class T>
void optimizer_update(std::size_t n, const OptimizerConfig& config, const T* grad, OptimizerState<T>& state,
                      T* params, int threads = 1) {
    const std::int64_t t = ++state.step;
    const T c1 = T(1.0 - std::pow(config.beta1, double(t)));
    const T c2 = T(1.0 - std::pow(config.beta2, double(t)));
    constexpr std::size_t block = 2048;
    const std::size_t blocks = (n + block - 1) / block;
    T* m = state.m.data();
    T* v = state.v.data();
    auto update = [&](std::size_t first, std::size_t last) {
        if (config.kind == Optimizer::adam)
            adam_elements(first, last, config, c1, c2, grad, m, v, params);
        else
            sgd_update(last - first, T(config.lr), grad + first, params + first);
    };
    if (blocks <= 1 || threads <= 1) {  // the inner loops' case: no parallel region at all
        update(0, n);
        return;
    }
    parallel_for(blocks, threads, [&](std::size_t b, int) { update(b * block, std::min(n, (b + 1) * block)); });
}

// One meta-optimizer update, computed out of place into `candidate` (and `candidate_state`) in
// parallel blocks, and committed only when the score, the gradient and the new parameters are
// all finite; returns whether it was. A diverging meta-iteration leaves a learner exactly as it
// was. Elementwise, so the result does not depend on `threads`.
template <class T>
bool update_if_finite(double score, const std::vector<T>& grad, const OptimizerConfig& config, int threads,
                      std::vector<T>& params, OptimizerState<T>& state, std::vector<T>& candidate,
                      OptimizerState<T>& candidate_state) {
    if (!std::isfinite(score)) return false;
    const std::size_t n = params.size();
    const bool adam = config.kind == Optimizer::adam;
    candidate.resize(n);
    if (adam) {
        candidate_state.m.resize(n);
        candidate_state.v.resize(n);
    }
    const std::int64_t t = state.step + 1;
    const T c1 = T(1.0 - std::pow(config.beta1, double(t)));
    const T c2 = T(1.0 - std::pow(config.beta2, double(t)));
    const T b1 = T(config.beta1), b2 = T(config.beta2), lr = T(config.lr), eps = T(config.eps);
    constexpr std::size_t block = 2048;
    const std::size_t blocks = (n + block - 1) / block;
    std::atomic<bool> finite{true};
    auto update = [&](std::size_t first, std::size_t last) {
        const T* __restrict g = grad.data();
        const T* __restrict p = params.data();
        T* __restrict out = candidate.data();
        bool ok = true;
        if (adam) {
            const T* __restrict m = state.m.data();
            const T* __restrict v = state.v.data();
            T* __restrict m_out = candidate_state.m.data();
            T* __restrict v_out = candidate_state.v.data();
            for (std::size_t i = first; i < last; ++i) {
                m_out[i] = b1 * m[i] + (T(1) - b1) * g[i];
                v_out[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
                out[i] = p[i] - lr * (m_out[i] / c1) / (std::sqrt(v_out[i] / c2) + eps);
                ok &= std::isfinite(out[i]) && std::isfinite(g[i]);
            }
        } else {
            for (std::size_t i = first; i < last; ++i) {
                out[i] = p[i] - lr * g[i];
                ok &= std::isfinite(out[i]) && std::isfinite(g[i]);
            }
        }
        if (!ok) finite.store(false, std::memory_order_relaxed);
    };
    if (blocks <= 1 || threads <= 1)
        update(0, n);
    else
        parallel_for(blocks, threads, [&](std::size_t b, int) { update(b * block, std::min(n, (b + 1) * block)); });
    if (!finite.load()) return false;
    std::swap(params, candidate);
    if (adam) {
        std::swap(state.m, candidate_state.m);
        std::swap(state.v, candidate_state.v);
    }
    state.step = t;
    return true;
}

}  // namespace metafast
