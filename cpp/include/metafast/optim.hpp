// Meta-optimizers as small update rules over a flat vector with explicit state
// (math.md section 3 gives Adam's formula).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

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

// params -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps), t counted from 1.
template <class T>
void adam_update(std::size_t n, const OptimizerConfig& config, const T* __restrict grad,
                 OptimizerState<T>& state, T* __restrict params) {
    const std::int64_t t = ++state.step;
    const T b1 = T(config.beta1), b2 = T(config.beta2), lr = T(config.lr), eps = T(config.eps);
    const T c1 = T(1.0 - std::pow(config.beta1, double(t)));
    const T c2 = T(1.0 - std::pow(config.beta2, double(t)));
    T* __restrict m = state.m.data();
    T* __restrict v = state.v.data();
    for (std::size_t i = 0; i < n; ++i) {
        m[i] = b1 * m[i] + (T(1) - b1) * grad[i];
        v[i] = b2 * v[i] + (T(1) - b2) * grad[i] * grad[i];
        params[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
    }
}

template <class T>
void optimizer_update(std::size_t n, const OptimizerConfig& config, const T* grad,
                      OptimizerState<T>& state, T* params) {
    if (config.kind == Optimizer::adam)
        adam_update(n, config, grad, state, params);
    else {
        ++state.step;
        sgd_update(n, T(config.lr), grad, params);
    }
}

}  // namespace metafast
