// A Reptile learner: theta, the inner optimizer's carried state (when not reset per task) and
// per-thread workspaces. Batched Reptile moves theta by epsilon * mean_i(theta~_i - theta);
// meta_step and fit are runs of the one meta-iteration (meta_iteration.hpp), so results are
// bit-identical for any thread count and a fit equals repeated meta-steps.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/function_ref.hpp"
#include "metafast/meta_iteration.hpp"
#include "metafast/parallel.hpp"
#include "metafast/reptile.hpp"
#include "metafast/reptile_update.hpp"
#include "metafast/task_batch.hpp"
#include "metafast/tasks.hpp"

namespace metafast {

template <class Net, class T>
class ReptileLearner {
public:
    // Shuffles during evaluation and adaptation use this iteration key, which training
    // (counting from 0) never reaches.
    static constexpr std::uint64_t evaluation_iteration = std::numeric_limits<std::uint64_t>::max();

    // `epsilon`: the outer step size's schedule over a fit (its offset and span are each call's).
    ReptileLearner(Net net, ReptileConfig config, EpsilonSchedule epsilon, std::uint64_t seed, int num_threads)
        : net_(std::move(net)), config_(config), epsilon_(epsilon), seed_(seed), params_(net_.num_params(), T(0)) {
        carried_.reset(params_.size());
        chain_.reset(params_.size());  // a commit checks and keeps it, even after a run of no local tasks
        set_num_threads(num_threads);
    }

    // Bytes a learner keeps for its life: theta, the carried inner state, the candidate theta
    // and the chain's inner state.
    static std::size_t learner_bytes(std::size_t num_params) {
        return (num_params + 2 * num_params + num_params + 2 * num_params) * sizeof(T);
    }

    // Bytes a run of `tasks` tasks on `threads` threads (0: the learner's) adds (meta_batch_bytes).
    std::size_t bytes_needed(std::size_t tasks, std::size_t rows, const TaskShape* sampled, int threads) const {
        const std::size_t team = static_cast<std::size_t>(threads > 0 ? threads : budget_.threads());
        return meta_batch_bytes<T>(tasks, params_.size(), rows, sampled, team,
                                   [&](std::size_t r) { return ReptileWorkspace<Net, T>::bytes(net_, config_, r); });
    }

    // Bytes the learner's buffers hold now (what bytes_needed and learner_bytes estimate).
    std::size_t allocated_bytes() const {
        std::size_t bytes = (params_.capacity() + candidate_.capacity()) * sizeof(T) + carried_.allocated_bytes() +
                            chain_.allocated_bytes() + buffers_.allocated_bytes() + storage_.allocated_bytes();
        for (const ReptileWorkspace<Net, T>& ws : workspaces_) bytes += ws.allocated_bytes();
        for (const SampleScratch& scratch : scratch_) bytes += scratch.allocated_bytes();
        return bytes;
    }

    const Net& network() const { return net_; }
    const ReptileConfig& config() const { return config_; }
    std::size_t num_params() const { return net_.num_params(); }
    std::mutex& mutex() { return mutex_; }
    Buffer<T>& params() { return params_; }
    OptimizerState<T>& optimizer_state() { return carried_; }  // the inner state carried across tasks

    int num_threads() const { return budget_.threads(); }
    void set_num_threads(int requested) {
        budget_.set(requested);
        workspaces_.resize(static_cast<std::size_t>(budget_.threads()));
        scratch_.resize(static_cast<std::size_t>(budget_.threads()));
    }

    // Inner updates of one full inner loop on `rows` support rows.
    std::size_t inner_updates(std::size_t rows) const {
        return config_.inner_epochs * batches_per_pass(rows, config_.inner_batch);
    }

    // One meta-iteration on `batch`, `position` of `span` into the epsilon schedule (span 0:
    // epsilon); `iteration` keys the shuffles. Returns false and changes nothing when a result
    // is not finite.
    FitResult meta_step(const TaskBatchView<T>& batch, std::uint64_t iteration, std::size_t position, std::size_t span,
                        Combination<T>& combine) {
        double committed = 0.0;
        return run(1, batch.tasks, iteration, schedule(position, span), &committed,
                   [&](std::size_t, std::size_t i, int) { return batch.task(i); }, combine);
    }

    // Meta-iterations on natively sampled tasks; iteration k is offset + k of span into the
    // epsilon schedule.
    FitResult fit(const TaskFamily& family, std::uint64_t first_iteration, std::size_t iterations,
                  std::size_t meta_batch, std::size_t offset, std::size_t span, double* losses,
                  Combination<T>& combine) {
        storage_.reserve(task_shape(family), meta_batch);
        const TaskBatchView<T> batch = storage_.view();
        const std::size_t first = combine.first_task();
        return run(iterations, meta_batch, first_iteration, schedule(offset, span), losses,
                   [&](std::size_t k, std::size_t i, int thread) {
                       sample_task(family, seed_, first_iteration + k, first + i, storage_.slot(i),
                                   scratch_[static_cast<std::size_t>(thread)]);
                       return batch.task(i);
                   },
                   combine);
    }

    // Query loss and accuracy of every task after each number of inner updates in `steps`
    // (ascending), each task from theta with a fresh optimizer state.
    void evaluate(const TaskBatchView<T>& batch, const std::vector<std::size_t>& steps, double* losses,
                  double* accuracies) {
        const std::size_t n = num_params(), columns = steps.size();
        const int team = budget_.team(batch.tasks, evaluation_timer_.seconds_each());
        const WorkTimer::Scope timing(evaluation_timer_, batch.tasks, team);
        parallel_for(batch.tasks, team, [&](std::size_t i, int thread) {
            ReptileWorkspace<Net, T>& ws = workspaces_[static_cast<std::size_t>(thread)];
            const TaskView<T> task = batch.task(i);
            ws.params.assign(params_.begin(), params_.end());
            ws.state.reset(n);
            CounterRng rng(shuffle_seed(seed_), evaluation_iteration, i);
            std::size_t done = 0;
            for (std::size_t c = 0; c < columns; ++c) {
                inner_loop(net_, config_, done, steps[c] - done, task.x_support, task.support_rows, task.y_support, rng,
                           ws.state, ws, ws.params.data());
                done = steps[c];
                const double loss = double(loss_value(net_, ws.params.data(), task.x_query, task.query_rows,
                                                      task.y_query, config_.loss, ws.network));
                losses[i * columns + c] = std::isnan(loss) ? HUGE_VAL : loss;  // diverged: +inf
                accuracies[i * columns + c] = accuracy(config_.loss, task.query_rows, net_.output_width(), logits(net_, ws.network), task.y_query);
            }
        });
    }

    // theta~ for one task after `steps` inner updates from theta with a fresh optimizer state.
    void adapt(const T* x, std::size_t rows, const Targets<T>& y, std::size_t steps, T* out) {
        ReptileWorkspace<Net, T>& ws = workspaces_[0];
        std::copy(params_.begin(), params_.end(), out);
        ws.state.reset(num_params());
        CounterRng rng(shuffle_seed(seed_), evaluation_iteration, 0);
        inner_loop(net_, config_, 0, steps, x, rows, y, rng, ws.state, ws, out);
    }

private:
    EpsilonSchedule schedule(std::size_t offset, std::size_t span) const {
        return {epsilon_.start, span == 0 ? epsilon_.start : epsilon_.end, offset, span};
    }

    // Meta-iterations whose task i of iteration k is task_of(k, i, thread) (sampled there if
    // need be); each task's slot is theta~_i - theta, its score the query loss at theta~_i.
    // With a carried optimizer state the tasks of an iteration form one chain and run in order,
    // on one thread.
    FitResult run(std::size_t iterations, std::size_t tasks, std::uint64_t first_iteration, EpsilonSchedule epsilon,
                  double* scores, FunctionRef<TaskView<T>(std::size_t, std::size_t, int)> task_of,
                  Combination<T>& combine) {
        const std::size_t n = num_params();
        const bool chained = !config_.reset_optimizer;
        const int team = chained ? 1 : budget_.team(tasks, task_timer_.seconds_each(), iterations);
        const WorkTimer::Scope timing(task_timer_, iterations * tasks, team);
        const ReptileUpdate<T> update(params_, candidate_, epsilon, budget_.threads(), chained ? &carried_ : nullptr,
                                      &chain_);
        return run_meta_iterations(
            iterations, tasks, n, team, buffers_, update, scores,
            [&](std::size_t k, std::size_t i, int thread, const T* theta) {
                ReptileWorkspace<Net, T>& ws = workspaces_[static_cast<std::size_t>(thread)];
                const TaskView<T> task = task_of(k, i, thread);
                T* delta = buffers_.slot(i, n);
                std::copy(theta, theta + n, delta);
                if (chained && i == 0) chain_ = carried_;
                OptimizerState<T>& state = chained ? chain_ : ws.state;
                if (!chained) state.reset(n);
                CounterRng rng(shuffle_seed(seed_), first_iteration + k, combine.first_task() + i);
                inner_loop(net_, config_, 0, inner_updates(task.support_rows), task.x_support, task.support_rows,
                           task.y_support, rng, state, ws, delta);
                const double loss = double(loss_value(net_, delta, task.x_query, task.query_rows, task.y_query,
                                                      config_.loss, ws.network));
                for (std::size_t p = 0; p < n; ++p) delta[p] -= theta[p];
                return loss;
            },
            combine);
    }

    Net net_;
    ReptileConfig config_;
    EpsilonSchedule epsilon_;
    std::uint64_t seed_;
    ThreadBudget budget_;
    WorkTimer task_timer_, evaluation_timer_;
    Buffer<T> params_, candidate_;
    MetaBatchBuffers<T> buffers_;
    OptimizerState<T> carried_, chain_;
    std::vector<ReptileWorkspace<Net, T>> workspaces_;
    std::vector<SampleScratch> scratch_;
    TaskBatchStorage<T> storage_;
    std::mutex mutex_;
};

}  // namespace metafast
