// Reptile's outer step as an update of the meta-iteration loop (meta_iteration.hpp):
// theta <- theta + epsilon_k * mean_i(theta~_i - theta), out of place and committed only when
// the mean, the new theta and (when carried) the chain's inner optimizer state are finite, like
// the meta-optimizers' GuardedUpdate.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "metafast/buffer.hpp"
#include "metafast/optim.hpp"

namespace metafast {

// Step size epsilon_k = start + (end - start) * (offset + k) / span for the k-th update of a run.
struct EpsilonSchedule {
    double start, end;
    std::size_t offset, span;

    double at(std::int64_t k) const {
        return start + (end - start) * double(offset + std::size_t(k)) / double(std::max<std::size_t>(span, 1));
    }
};

template <class T>
class ReptileUpdate {
public:
    // `carried` (or null): the inner optimizer state carried from task to task, which a commit
    // replaces by `chain`, the state at the end of the iteration's chain of tasks. A chain runs
    // on one thread, so only one copy of this update ever commits.
    ReptileUpdate(Buffer<T>& params, Buffer<T>& candidate, EpsilonSchedule epsilon, int threads,
                  OptimizerState<T>* carried, OptimizerState<T>* chain)
        : params_buffer_(&params), candidate_buffer_(&candidate), carried_(carried), chain_(chain),
          epsilon_(epsilon), n_(params.size()) {
        candidate.resize(n_);
        params_[0] = params.data();
        params_[1] = candidate.data();
        block_ = update_block_size(n_, threads);
    }

    std::size_t blocks() const { return (n_ + block_ - 1) / block_; }
    const T* params() const { return params_[current_]; }

    template <class Prepare>
    bool update_block(std::size_t b, T* mean, Prepare&& prepare) const {
        const std::size_t first = b * block_, last = std::min(n_, first + block_);
        prepare(first, last);
        const T step = T(epsilon_.at(step_));
        const T* now = params_[current_];
        T* out = params_[1 - current_];
        for (std::size_t k = first; k < last; ++k) out[k] = now[k] + step * mean[k];
        const std::size_t count = last - first;
        const bool finite = all_finite(count, mean + first) && all_finite(count, out + first);
        // The chain's inner state is committed too: Adam's second moment may overflow while
        // the parameters it moves stay finite.
        if (!carried_) return finite;
        return finite && all_finite(count, chain_->m.data() + first) && all_finite(count, chain_->v.data() + first);
    }

    void prefetch_candidate() const {}

    void commit() {
        current_ = 1 - current_;
        ++step_;
        if (carried_) std::swap(*carried_, *chain_);
    }

    void finish() const {
        if (current_ == 1) std::swap(*params_buffer_, *candidate_buffer_);
    }

private:
    Buffer<T>* params_buffer_;
    Buffer<T>* candidate_buffer_;
    OptimizerState<T>* carried_;
    OptimizerState<T>* chain_;
    EpsilonSchedule epsilon_;
    std::size_t n_, block_ = 0;
    T* params_[2];
    int current_ = 0;
    std::int64_t step_ = 0;
};

}  // namespace metafast
