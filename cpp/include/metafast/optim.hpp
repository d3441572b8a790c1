// Meta-optimizers as small update rules over a flat vector with explicit state
// (docs/math.md, section 3 gives Adam's formula).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/fast_math.hpp"

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
    // The parameters from tail_from on (Meta-SGD's alpha) learn at tail_lr instead of lr.
    std::size_t tail_from = std::numeric_limits<std::size_t>::max();
    double tail_lr = 0;
};

// Adam's moments and the number of updates taken so far.
template <class T>
struct OptimizerState {
    Buffer<T> m, v;
    std::int64_t step = 0;

    void reset(std::size_t n) {
        m.assign(n, T(0));
        v.assign(n, T(0));
        step = 0;
    }

    std::size_t allocated_bytes() const { return (m.capacity() + v.capacity()) * sizeof(T); }
};

// SGD from params into out (in place when out is params).
template <class T>
void sgd_elements(std::size_t n, T lr, const T* grad, const T* params, T* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = params[i] - lr * grad[i];
}

// Adam's update at step t, written with one square root and one division per element:
// lr (m / c1) / (sqrt(v / c2) + eps) = (lr / c1) m / (sqrt(v) / sqrt(c2) + eps), where
// c1 = 1 - beta1^t and c2 = 1 - beta2^t; the per-step scalars are computed once in double.
// On vectors of floats the square root and the division use fast::sqrt and fast::reciprocal.
template <class T>
struct AdamStep {
    T b1, b2, eps, step_size, inv_sqrt_c2;

    AdamStep(const OptimizerConfig& config, std::int64_t t) : AdamStep(config, t, config.lr) {}
    AdamStep(const OptimizerConfig& config, std::int64_t t, double lr)
        : b1(T(config.beta1)), b2(T(config.beta2)), eps(T(config.eps)),
          step_size(T(lr / (1.0 - std::pow(config.beta1, double(t))))),
          inv_sqrt_c2(T(1.0 / std::sqrt(1.0 - std::pow(config.beta2, double(t))))) {}

    // New moments from (m, v, g); returns the parameter's new value.
    T operator()(T m, T v, T g, T param, T& m_new, T& v_new) const {
        m_new = b1 * m + (T(1) - b1) * g;
        v_new = b2 * v + (T(1) - b2) * g * g;
        return param - step_size * m_new / (std::sqrt(v_new) * inv_sqrt_c2 + eps);
    }

#ifdef METAFAST_VECTOR_KERNELS
    // For T = float only (a member of a class template is compiled only where it is used).
    fast::Floats operator()(fast::Floats m, fast::Floats v, fast::Floats g, fast::Floats param, fast::Floats& m_new,
                            fast::Floats& v_new) const {
        m_new = b1 * m + (T(1) - b1) * g;
        v_new = b2 * v + (T(1) - b2) * g * g;
        return param - step_size * m_new * fast::reciprocal(fast::sqrt(v_new) * inv_sqrt_c2 + eps);
    }
#endif
};

// Adam from (params, m, v) into (out, m_out, v_out), n elements; in place when the outputs are
// the inputs (each element is read before it is written).
template <class T>
void adam_elements(std::size_t n, const AdamStep<T>& adam, const T* grad, const T* params, const T* m,
                   const T* v, T* out, T* m_out, T* v_out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = adam(m[i], v[i], grad[i], params[i], m_out[i], v_out[i]);
}

#ifdef METAFAST_VECTOR_KERNELS
// `adam` by value: a local copy the stores below cannot alias, so its scalars stay in registers
// instead of being reloaded and broadcast for every vector.
inline void adam_elements(std::size_t n, const AdamStep<float> adam, const float* grad, const float* params,
                          const float* m, const float* v, float* out, float* m_out, float* v_out) {
    using fast::load_partial, fast::store_partial;
    auto update = [&, adam](std::size_t i, std::size_t count) {
        fast::Floats m_new, v_new;
        const fast::Floats p = adam(load_partial(m + i, count), load_partial(v + i, count),
                                    load_partial(grad + i, count), load_partial(params + i, count), m_new, v_new);
        store_partial(m_out + i, count, m_new);
        store_partial(v_out + i, count, v_new);
        store_partial(out + i, count, p);
    };
    std::size_t i = 0;
    for (; i + fast::float_lanes <= n; i += fast::float_lanes) update(i, fast::float_lanes);
    if (i < n) update(i, n - i);
}
#endif

// Adam's scalars for steps 1, 2, ... of one configuration, computed once and then looked up: an
// inner loop that restarts Adam for every task would otherwise take two pow() per step.
template <class T>
class AdamSchedule {
public:
    static constexpr std::int64_t steps_kept = 4096;  // beyond: computed each time, not stored

    AdamStep<T> at(const OptimizerConfig& config, std::int64_t t) {
        if (config.lr != lr_ || config.beta1 != beta1_ || config.beta2 != beta2_ || config.eps != eps_) {
            steps_.clear();
            lr_ = config.lr, beta1_ = config.beta1, beta2_ = config.beta2, eps_ = config.eps;
        }
        if (t > steps_kept) return AdamStep<T>(config, t);
        if (static_cast<std::size_t>(t) > steps_.capacity())  // doubling, but never beyond the steps kept
            steps_.reserve(std::min<std::size_t>(std::max<std::size_t>(std::size_t(t), 2 * steps_.capacity()),
                                                 std::size_t(steps_kept)));
        while (static_cast<std::int64_t>(steps_.size()) < t)
            steps_.emplace_back(config, static_cast<std::int64_t>(steps_.size()) + 1);
        return steps_[static_cast<std::size_t>(t - 1)];
    }

    std::size_t allocated_bytes() const { return steps_.capacity() * sizeof(AdamStep<T>); }

private:
    std::vector<AdamStep<T>> steps_;
    double lr_ = 0, beta1_ = 0, beta2_ = 0, eps_ = 0;
};

// One update of the inner optimizer in place (Adam with t counted from 1, or SGD).
template <class T>
void optimizer_update(std::size_t n, const OptimizerConfig& config, const T* grad, OptimizerState<T>& state,
                      AdamSchedule<T>& schedule, T* params) {
    ++state.step;
    if (config.kind == Optimizer::adam)
        adam_elements(n, schedule.at(config, state.step), grad, params, state.m.data(), state.v.data(), params,
                      state.m.data(), state.v.data());
    else
        sgd_elements(n, T(config.lr), grad, params, params);
}

// Whether x[0 .. n) are all finite; branch-free (|x| <= max is false for inf and NaN), so it vectorises.
template <class T>
bool all_finite(std::size_t n, const T* x) {
    int finite = 1;
    for (std::size_t i = 0; i < n; ++i) finite &= std::abs(x[i]) <= std::numeric_limits<T>::max();
    return finite != 0;
}

// The blocks an update of n parameters is split into for `threads` threads: a few per thread, of
// at least 256 elements (a multiple of any vector width).
inline std::size_t update_block_size(std::size_t n, int threads) {
    const std::size_t wanted = static_cast<std::size_t>(std::max(threads, 1)) * 4;
    return std::max<std::size_t>(256, ((n + wanted - 1) / wanted + 63) / 64 * 64);
}

// Meta-optimizer updates computed out of place, from the current parameters and state into
// the candidate buffers, in blocks that threads share; committing one makes the candidate
// current. An update is committed only when its gradient, new parameters and new state are all finite, so a
// diverging meta-iteration leaves a learner exactly as it was. Elementwise, so the result
// depends neither on the threads nor on the blocks.
// Cheap to copy: threads may each keep a copy and commit alike, with no lock or swap between
// updates; finish() then leaves the committed values in the learner's buffers.
template <class T>
class GuardedUpdate {
public:
    // Sizes the candidate buffers (the only step that allocates) and the blocks.
    GuardedUpdate(const OptimizerConfig& config, int threads, Buffer<T>& params, OptimizerState<T>& state,
                  Buffer<T>& candidate, OptimizerState<T>& candidate_state)
        : config_(&config), params_buffer_(&params), state_(&state), candidate_buffer_(&candidate),
          candidate_state_(&candidate_state), n_(params.size()), step_(state.step), adam_(config, state.step + 1),
          adam_tail_(config, state.step + 1, config.tail_lr) {
        const bool adam = config.kind == Optimizer::adam;
        candidate.resize(n_);
        if (adam) {
            candidate_state.m.resize(n_);
            candidate_state.v.resize(n_);
        }
        params_[0] = params.data();
        params_[1] = candidate.data();
        m_[0] = adam ? state.m.data() : nullptr;
        m_[1] = adam ? candidate_state.m.data() : nullptr;
        v_[0] = adam ? state.v.data() : nullptr;
        v_[1] = adam ? candidate_state.v.data() : nullptr;
        block_ = update_block_size(n_, threads);
        blocks_ = (n_ + block_ - 1) / block_;
    }

    std::size_t blocks() const { return blocks_; }
    const T* params() const { return params_[current_]; }  // the current parameters

    // Computes block b of the candidate from grad, after prepare(first, last) has filled grad
    // there (computing the mean over tasks there, block by block, saves a pass over memory);
    // returns whether the block's gradient, new parameters and new optimizer state are finite
    // (Adam's second moment overflows on gradients whose parameters still look finite, and a
    // state that is not finite could neither be saved nor take another step).
    template <class Prepare>
    bool update_block(std::size_t b, T* grad, Prepare&& prepare) const {
        const std::size_t first = b * block_, last = std::min(n_, first + block_), count = last - first;
        prepare(first, last);
        const std::size_t split = std::clamp(config_->tail_from, first, last);
        update_range(first, split, adam_, config_->lr, grad);
        update_range(split, last, adam_tail_, config_->tail_lr, grad);
        const int next = 1 - current_;
        const bool finite = all_finite(count, grad + first) && all_finite(count, params_[next] + first);
        if (config_->kind != Optimizer::adam) return finite;
        return finite && all_finite(count, m_[next] + first) && all_finite(count, v_[next] + first);
    }

    // Asks for the candidate parameters' cache lines in exclusive state ahead of an update:
    // other cores hold copies of them (they read the parameters of the iteration before), and
    // invalidating those one store at a time stalls the update.
    void prefetch_candidate() const {
#if defined(__GNUC__) || defined(__clang__)
        const T* p = params_[1 - current_];
        for (std::size_t i = 0; i < n_; i += 64 / sizeof(T)) __builtin_prefetch(p + i, 1, 3);
#endif
    }

    // Makes the candidate current (every block updated and finite).
    void commit() {
        current_ = 1 - current_;
        ++step_;
        adam_ = AdamStep<T>(*config_, step_ + 1);
        adam_tail_ = AdamStep<T>(*config_, step_ + 1, config_->tail_lr);
    }

    // Leaves the current parameters and state in the learner's buffers; once, by one copy.
    void finish() const {
        if (current_ == 1) {
            std::swap(*params_buffer_, *candidate_buffer_);
            if (config_->kind == Optimizer::adam) {
                std::swap(state_->m, candidate_state_->m);
                std::swap(state_->v, candidate_state_->v);
            }
        }
        state_->step = step_;
    }

private:
    // The candidate's elements [first, last) at one learning rate (`adam` Adam's scalars for it).
    void update_range(std::size_t first, std::size_t last, const AdamStep<T>& adam, double lr, const T* grad) const {
        if (first == last) return;
        const int now = current_, next = 1 - current_;
        const std::size_t count = last - first;
        T* out = params_[next] + first;
        if (config_->kind == Optimizer::adam)
            adam_elements(count, adam, grad + first, params_[now] + first, m_[now] + first, v_[now] + first, out,
                          m_[next] + first, v_[next] + first);
        else
            sgd_elements(count, T(lr), grad + first, params_[now] + first, out);
    }

    const OptimizerConfig* config_;
    Buffer<T>* params_buffer_;
    OptimizerState<T>* state_;
    Buffer<T>* candidate_buffer_;
    OptimizerState<T>* candidate_state_;
    std::size_t n_;
    T* params_[2];  // [0]: the learner's buffers, [1]: the candidate's
    T* m_[2];
    T* v_[2];
    int current_ = 0;
    std::int64_t step_;  // updates committed
    AdamStep<T> adam_;       // Adam's scalars for the next update
    AdamStep<T> adam_tail_;  // the same for the elements from config.tail_from on
    std::size_t block_ = 0, blocks_ = 0;
};

}  // namespace metafast
