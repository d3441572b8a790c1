// A Meta-SGD learner: theta and alpha (one flat vector [theta, alpha]), the meta-optimizer's
// state, and per-thread workspaces. Tasks of a meta-batch run in parallel, each writing its own
// gradient slot; the mean over tasks is a sequential loop in task order, so results are
// bit-identical for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/meta_batch_loop.hpp"
#include "metafast/meta_sgd.hpp"
#include "metafast/optim.hpp"
#include "metafast/parallel.hpp"
#include "metafast/task_batch.hpp"
#include "metafast/tasks.hpp"

namespace metafast {

template <class T>
class MetaSgdLearner {
public:
    MetaSgdLearner(Mlp mlp, MetaSgdConfig config, OptimizerConfig optimizer, int num_threads)
        : mlp_(std::move(mlp)), config_(config), optimizer_(optimizer),
          params_(2 * mlp_.num_params(), T(0)), mean_grad_(2 * mlp_.num_params(), T(0)) {
        state_.reset(params_.size());
        set_num_threads(num_threads);
    }

    const Mlp& mlp() const { return mlp_; }
    const MetaSgdConfig& config() const { return config_; }
    const OptimizerConfig& optimizer() const { return optimizer_; }
    std::size_t num_params() const { return mlp_.num_params(); }

    // Guards every public call: Python threads may share a learner while the GIL is released.
    std::mutex& mutex() { return mutex_; }

    Buffer<T>& params() { return params_; }  // [theta, alpha]
    OptimizerState<T>& optimizer_state() { return state_; }
    const Buffer<T>& mean_gradient() const { return mean_grad_; }  // [g_theta, g_alpha]

    int num_threads() const { return threads_; }
    void set_num_threads(int requested) {
        threads_ = resolve_threads(requested);
        workspaces_.resize(static_cast<std::size_t>(threads_));
        scratch_.resize(static_cast<std::size_t>(threads_));
    }

    // Mean query loss over the batch; the mean gradient goes to mean_gradient().
    double meta_gradient(const TaskBatchView<T>& batch) {
        const std::size_t n = num_params(), width = 2 * n;
        grow_task_slots(batch.tasks);
        parallel_for(batch.tasks, threads_, [&](std::size_t i, int thread) {
            T* g = task_grads_.data() + i * width;
            task_losses_[i] = double(task_meta_gradient(mlp_, config_, params_.data(), params_.data() + n,
                                                        batch.task(i), workspaces_[static_cast<std::size_t>(thread)],
                                                        g, g + n));
        });
        mean_over_tasks(batch.tasks, width, task_grads_.data(), mean_grad_.data(), threads_);
        double loss = 0.0;
        for (std::size_t i = 0; i < batch.tasks; ++i) loss += task_losses_[i];
        return loss / double(batch.tasks);
    }

    // One meta-iteration. Returns false and changes nothing when the loss or the gradient is
    // not finite.
    bool meta_step(const TaskBatchView<T>& batch, double& loss) {
        loss = meta_gradient(batch);
        return update_if_finite(loss);
    }

    // `iterations` meta-iterations on tasks sampled natively: task i of iteration k is keyed by
    // (seed, first_iteration + k, i). Writes one mean query loss per completed iteration.
    FitResult fit(const TaskFamily& family, std::uint64_t seed, std::uint64_t first_iteration,
                  std::size_t iterations, std::size_t meta_batch, double* losses) {
        storage_.reserve(task_shape(family), meta_batch);
        const std::size_t n = num_params(), width = 2 * n;
        grow_task_slots(meta_batch);
        if (sum_.size() < width) sum_.resize(width);
        const TaskBatchView<T> batch = storage_.view();
        return meta_batch_loop(iterations, meta_batch, width, threads_, task_grads_.data(), task_losses_.data(),
                               sum_.data(), mean_grad_.data(),
                               GuardedUpdate<T>(optimizer_, threads_, params_, state_, candidate_, candidate_state_),
                               losses,
                               [&](std::size_t k, std::size_t i, int thread, const T* params) {
                                   const auto t = static_cast<std::size_t>(thread);
                                   sample_task(family, seed, first_iteration + k, i, storage_.slot(i), scratch_[t]);
                                   T* g = task_grads_.data() + i * width;
                                   return double(task_meta_gradient(mlp_, config_, params, params + n, batch.task(i),
                                                                    workspaces_[t], g, g + n));
                               });
    }

    // Query loss and accuracy of every task after each number of inner steps in `steps`
    // (ascending): losses and accuracies are (tasks x steps.size()), row-major.
    void evaluate(const TaskBatchView<T>& batch, const std::vector<std::size_t>& steps,
                  double* losses, double* accuracies) {
        const std::size_t n = num_params(), columns = steps.size();
        const T* alpha = params_.data() + n;
        parallel_for(batch.tasks, threads_, [&](std::size_t i, int thread) {
            MetaSgdWorkspace<T>& ws = workspaces_[static_cast<std::size_t>(thread)];
            ws.reserve(n, 1);
            const TaskView<T> task = batch.task(i);
            T* current = ws.thetas.data();
            T* next = current + n;
            std::copy(params_.data(), params_.data() + n, current);
            std::size_t done = 0;
            for (std::size_t c = 0; c < columns; ++c) {
                for (; done < steps[c]; ++done) {
                    inner_step(mlp_, config_.loss, current, alpha, task.x_support, task.support_rows,
                               task.y_support, ws.mlp, ws.grads.data(), next);
                    std::swap(current, next);
                }
                const double loss = double(loss_value(mlp_, current, task.x_query, task.query_rows,
                                                      task.y_query, config_.loss, ws.mlp));
                // An adaptation that overflowed scores +inf (not NaN): it diverged.
                losses[i * columns + c] = std::isnan(loss) ? HUGE_VAL : loss;
                accuracies[i * columns + c] =
                    accuracy(config_.loss, task.query_rows, mlp_.output_width(),
                             ws.mlp.z[mlp_.num_layers() - 1].data(), task.y_query);
            }
        });
    }

    // theta' for one task after `steps` inner steps.
    void adapt(const T* x, std::size_t rows, const Targets<T>& y, std::size_t steps, T* out) {
        metafast::adapt(mlp_, config_.loss, params_.data(), params_.data() + num_params(), steps, x,
                        rows, y, workspaces_[0], out);
    }

private:
    void grow_task_slots(std::size_t tasks) {
        if (task_grads_.size() < tasks * 2 * num_params()) task_grads_.resize(tasks * 2 * num_params());
        if (task_losses_.size() < tasks) task_losses_.resize(tasks);
    }

    bool update_if_finite(double score) {
        return metafast::update_if_finite(score, mean_grad_, optimizer_, threads_, params_, state_, candidate_,
                                          candidate_state_);
    }

    Mlp mlp_;
    MetaSgdConfig config_;
    OptimizerConfig optimizer_;
    int threads_ = 1;
    Buffer<T> params_, mean_grad_, candidate_;
    OptimizerState<T> state_, candidate_state_;
    std::vector<MetaSgdWorkspace<T>> workspaces_;
    std::vector<std::vector<double>> scratch_;
    Buffer<T> task_grads_, sum_;
    std::vector<double> task_losses_;
    TaskBatchStorage<T> storage_;
    std::mutex mutex_;
};

}  // namespace metafast
