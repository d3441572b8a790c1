// A Reptile learner: theta, the inner optimizer's carried state (when not reset per task) and
// per-thread workspaces. Batched Reptile moves theta by epsilon * mean_i(theta~_i - theta);
// tasks run in parallel, each writing its own slot, and the mean is summed in task order, so
// results are bit-identical for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/meta_batch_loop.hpp"  // FitResult
#include "metafast/parallel.hpp"
#include "metafast/reptile.hpp"
#include "metafast/task_batch.hpp"
#include "metafast/tasks.hpp"

namespace metafast {

template <class T>
class ReptileLearner {
public:
    // Shuffles during evaluation and adaptation use this iteration key, which training
    // (counting from 0) never reaches.
    static constexpr std::uint64_t evaluation_iteration = std::numeric_limits<std::uint64_t>::max();

    ReptileLearner(Mlp mlp, ReptileConfig config, std::uint64_t seed, int num_threads)
        : mlp_(std::move(mlp)), config_(config), seed_(seed), params_(mlp_.num_params(), T(0)) {
        carried_.reset(params_.size());
        set_num_threads(num_threads);
    }

    const Mlp& mlp() const { return mlp_; }
    const ReptileConfig& config() const { return config_; }
    std::size_t num_params() const { return mlp_.num_params(); }
    std::mutex& mutex() { return mutex_; }
    Buffer<T>& params() { return params_; }
    OptimizerState<T>& optimizer_state() { return carried_; }  // the inner state carried across tasks

    int num_threads() const { return threads_; }
    void set_num_threads(int requested) {
        threads_ = resolve_threads(requested);
        workspaces_.resize(static_cast<std::size_t>(threads_));
        scratch_.resize(static_cast<std::size_t>(threads_));
    }

    // Inner updates of one full inner loop on `rows` support rows.
    std::size_t inner_updates(std::size_t rows) const {
        return config_.inner_epochs * batches_per_pass(rows, config_.inner_batch);
    }

    // One meta-iteration on `batch` with step size epsilon; `iteration` keys the shuffles.
    // Returns false and changes nothing when a result is not finite.
    bool meta_step(const TaskBatchView<T>& batch, double epsilon, std::uint64_t iteration, double& loss) {
        loss = run_tasks(batch.tasks, iteration, [&](std::size_t i, int) { return batch.task(i); });
        return update_if_finite(loss, batch.tasks, epsilon);
    }

    // Meta-iterations on natively sampled tasks; iteration k uses the step size
    // epsilon_start + (epsilon_end - epsilon_start) * (offset + k) / span.
    FitResult fit(const TaskFamily& family, std::uint64_t first_iteration, std::size_t iterations,
                  std::size_t meta_batch, double epsilon_start, double epsilon_end, std::size_t offset,
                  std::size_t span, double* losses) {
        storage_.reserve(task_shape(family), meta_batch);
        for (std::size_t k = 0; k < iterations; ++k) {
            const std::uint64_t iteration = first_iteration + k;
            const TaskBatchView<T> batch = storage_.view();
            const double loss = run_tasks(meta_batch, iteration, [&](std::size_t i, int thread) {
                sample_task(family, seed_, iteration, i, storage_.slot(i), scratch_[static_cast<std::size_t>(thread)]);
                return batch.task(i);
            });
            const double epsilon =
                epsilon_start + (epsilon_end - epsilon_start) * double(offset + k) / double(std::max<std::size_t>(span, 1));
            if (!update_if_finite(loss, meta_batch, epsilon)) return {k, true};
            losses[k] = loss;
        }
        return {iterations, false};
    }

    // Query loss and accuracy of every task after each number of inner updates in `steps`
    // (ascending), each task from theta with a fresh optimizer state.
    void evaluate(const TaskBatchView<T>& batch, const std::vector<std::size_t>& steps, double* losses,
                  double* accuracies) {
        const std::size_t n = num_params(), columns = steps.size();
        parallel_for(batch.tasks, threads_, [&](std::size_t i, int thread) {
            ReptileWorkspace<T>& ws = workspaces_[static_cast<std::size_t>(thread)];
            const TaskView<T> task = batch.task(i);
            ws.params.assign(params_.begin(), params_.end());
            ws.state.reset(n);
            CounterRng rng(shuffle_seed(seed_), evaluation_iteration, i);
            std::size_t done = 0;
            for (std::size_t c = 0; c < columns; ++c) {
                inner_loop(mlp_, config_, done, steps[c] - done, task.x_support, task.support_rows, task.y_support, rng,
                           ws.state, ws, ws.params.data());
                done = steps[c];
                const double loss = double(loss_value(mlp_, ws.params.data(), task.x_query, task.query_rows,
                                                      task.y_query, config_.loss, ws.mlp));
                losses[i * columns + c] = std::isnan(loss) ? HUGE_VAL : loss;  // diverged: +inf
                accuracies[i * columns + c] = accuracy(config_.loss, task.query_rows, mlp_.output_width(),
                                                       ws.mlp.z[mlp_.num_layers() - 1].data(), task.y_query);
            }
        });
    }

    // theta~ for one task after `steps` inner updates from theta with a fresh optimizer state.
    void adapt(const T* x, std::size_t rows, const Targets<T>& y, std::size_t steps, T* out) {
        ReptileWorkspace<T>& ws = workspaces_[0];
        std::copy(params_.begin(), params_.end(), out);
        ws.state.reset(num_params());
        CounterRng rng(shuffle_seed(seed_), evaluation_iteration, 0);
        inner_loop(mlp_, config_, 0, steps, x, rows, y, rng, ws.state, ws, out);
    }

private:
    // Runs the inner loop of tasks 0..tasks-1 (task_of(i, thread) gives the task, sampling it
    // first if need be), leaving theta~_i - theta in slot i; returns the mean query loss at the
    // theta~_i. With a carried optimizer state the tasks form one chain and run in order.
    template <class TaskOf>
    double run_tasks(std::size_t tasks, std::uint64_t iteration, TaskOf&& task_of) {
        const std::size_t n = num_params();
        if (deltas_.size() < tasks * n) deltas_.resize(tasks * n);
        if (task_losses_.size() < tasks) task_losses_.resize(tasks);
        chain_ = carried_;
        auto one_task = [&](std::size_t i, int thread) {
            ReptileWorkspace<T>& ws = workspaces_[static_cast<std::size_t>(thread)];
            const TaskView<T> task = task_of(i, thread);
            T* delta = deltas_.data() + i * n;
            std::copy(params_.begin(), params_.end(), delta);
            OptimizerState<T>& state = config_.reset_optimizer ? ws.state : chain_;
            if (config_.reset_optimizer) state.reset(n);
            CounterRng rng(shuffle_seed(seed_), iteration, i);
            inner_loop(mlp_, config_, 0, inner_updates(task.support_rows), task.x_support, task.support_rows,
                       task.y_support, rng, state, ws, delta);
            task_losses_[i] = double(loss_value(mlp_, delta, task.x_query, task.query_rows, task.y_query,
                                                config_.loss, ws.mlp));
            for (std::size_t k = 0; k < n; ++k) delta[k] -= params_[k];
        };
        parallel_for(tasks, config_.reset_optimizer ? threads_ : 1, one_task);
        double loss = 0.0;
        for (std::size_t i = 0; i < tasks; ++i) loss += task_losses_[i];
        return loss / double(tasks);
    }

    // theta += epsilon * mean_i delta_i, committed only when everything is finite.
    bool update_if_finite(double loss, std::size_t tasks, double epsilon) {
        if (!std::isfinite(loss)) return false;
        const std::size_t n = num_params();
        candidate_.resize(n);
        mean_over_tasks(tasks, n, deltas_.data(), candidate_.data(), threads_);
        const T step = T(epsilon);
        for (std::size_t k = 0; k < n; ++k) {
            candidate_[k] = params_[k] + step * candidate_[k];
            if (!std::isfinite(candidate_[k])) return false;
        }
        std::swap(params_, candidate_);
        if (!config_.reset_optimizer) std::swap(carried_, chain_);
        return true;
    }

    Mlp mlp_;
    ReptileConfig config_;
    std::uint64_t seed_;
    int threads_ = 1;
    Buffer<T> params_, candidate_, deltas_;
    std::vector<double> task_losses_;
    OptimizerState<T> carried_, chain_;
    std::vector<ReptileWorkspace<T>> workspaces_;
    std::vector<std::vector<double>> scratch_;
    TaskBatchStorage<T> storage_;
    std::mutex mutex_;
};

}  // namespace metafast
