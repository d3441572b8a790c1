// A Meta-SGD learner: theta and alpha (one flat vector [theta, alpha], alpha one vector or one
// per inner step; for MAML [theta] alone, alpha a fixed step size), the meta-optimizer's
// state, and per-thread workspaces. meta_gradient, meta_step and fit are runs of the one
// meta-iteration (meta_iteration.hpp), so results are bit-identical for any thread count and a
// fit equals repeated meta-steps.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/cancellation.hpp"
#include "metafast/function_ref.hpp"
#include "metafast/meta_iteration.hpp"
#include "metafast/meta_sgd.hpp"
#include "metafast/optim.hpp"
#include "metafast/parallel.hpp"
#include "metafast/task_batch.hpp"
#include "metafast/tasks.hpp"

namespace metafast {

template <class Net, class T>
class MetaSgdLearner {
public:
    // fixed_alpha: MAML's step size, for every parameter (when config.learn_alpha is false);
    // optimizer.tail_lr: alpha's meta learning rate (when it is learned); `seed` keys fit's tasks.
    MetaSgdLearner(Net net, MetaSgdConfig config, OptimizerConfig optimizer, std::uint64_t seed, int num_threads,
                   double fixed_alpha = 0)
        : net_(std::move(net)), config_(config), optimizer_(optimizer), seed_(seed),
          params_(params_width(net_.num_params(), alpha_vectors(config)), T(0)),
          fixed_alpha_(config.learn_alpha ? 0 : net_.num_params(), T(fixed_alpha)) {
        optimizer_.tail_from = config.learn_alpha ? net_.num_params() : params_.size();
        state_.reset(params_.size());
        set_num_threads(num_threads);
    }

    // Vectors of num_params values alpha holds when learned (0 for MAML), and the length of
    // [theta, alpha].
    static std::size_t alpha_vectors(const MetaSgdConfig& config) {
        return config.learn_alpha ? config.alpha_vectors() : 0;
    }
    static std::size_t params_width(std::size_t num_params, std::size_t alpha_vectors) {
        return (1 + alpha_vectors) * num_params;
    }

    // Bytes a learner keeps for its life: [theta, alpha], the meta-optimizer's state, the
    // candidate update and its state (GuardedUpdate), and MAML's fixed alpha.
    static std::size_t learner_bytes(std::size_t num_params, std::size_t alpha_vectors) {
        const std::size_t width = params_width(num_params, alpha_vectors);
        return (width + 2 * width + width + 2 * width + (alpha_vectors == 0 ? num_params : 0)) * sizeof(T);
    }

    // Bytes a run of `tasks` tasks on `threads` threads (0: the learner's) adds (meta_batch_bytes).
    std::size_t bytes_needed(std::size_t tasks, std::size_t rows, const TaskShape* sampled, int threads) const {
        const std::size_t team = static_cast<std::size_t>(threads > 0 ? threads : budget_.threads());
        return meta_batch_bytes<T>(tasks, params_.size(), rows, sampled, team,
                                   [&](std::size_t r) { return MetaSgdWorkspace<Net, T>::bytes(net_, std::max<std::size_t>(config_.inner_steps, 1), r); });
    }

    // Bytes the learner's buffers hold now (what bytes_needed and learner_bytes estimate).
    std::size_t allocated_bytes() const {
        std::size_t bytes = (params_.capacity() + fixed_alpha_.capacity() + candidate_.capacity()) * sizeof(T) +
                            state_.allocated_bytes() + candidate_state_.allocated_bytes() +
                            buffers_.allocated_bytes() + storage_.allocated_bytes();
        for (const MetaSgdWorkspace<Net, T>& ws : workspaces_) bytes += ws.allocated_bytes();
        for (const SampleScratch& scratch : scratch_) bytes += scratch.allocated_bytes();
        return bytes;
    }

    const Net& network() const { return net_; }
    const MetaSgdConfig& config() const { return config_; }
    const OptimizerConfig& optimizer() const { return optimizer_; }
    std::size_t num_params() const { return net_.num_params(); }

    // Guards every public call: Python threads may share a learner while the GIL is released.
    std::mutex& mutex() { return mutex_; }

    Buffer<T>& params() { return params_; }  // [theta, alpha] ([theta] for MAML)
    OptimizerState<T>& optimizer_state() { return state_; }
    const Buffer<T>& mean_gradient() const { return buffers_.mean; }  // [g_theta, g_alpha] of the last run
    // The inner steps' alpha (its alpha_vectors() blocks) at the parameters `params`.
    const T* alpha(const T* params) const { return config_.learn_alpha ? params + num_params() : fixed_alpha_.data(); }

    int num_threads() const { return budget_.threads(); }
    void set_num_threads(int requested) {
        budget_.set(requested);
        workspaces_.resize(static_cast<std::size_t>(budget_.threads()));
        scratch_.resize(static_cast<std::size_t>(budget_.threads()));
    }

    // Mean query loss over the batch; the mean gradient goes to mean_gradient(). With a
    // distributed `combine`, the batch is this process's share of the meta-batch.
    FitResult meta_gradient(const TaskBatchView<T>& batch, Combination<T>& combine) {
        const MeanOnly<T> keep(params_.data(), params_.size(), budget_.threads());
        return run(1, batch.tasks, keep, nullptr, [&](std::size_t, std::size_t i, int) { return batch.task(i); }, combine,
                   0.0);  // the exact mean: clipping is the update's
    }

    // One meta-iteration; completed 0 and nothing changed when the loss or the gradient is not
    // finite.
    FitResult meta_step(const TaskBatchView<T>& batch, Combination<T>& combine) {
        double committed = 0.0;
        return run(1, batch.tasks, guarded_update(), &committed,
                   [&](std::size_t, std::size_t i, int) { return batch.task(i); }, combine, config_.clip_grad_norm);
    }

    // `iterations` meta-iterations on tasks sampled natively: task i of iteration k is keyed by
    // (the learner's seed, first_iteration + k, i). Writes one mean query loss per completed iteration. With a
    // distributed `combine`, meta_batch is this process's share.
    FitResult fit(const TaskFamily& family, std::uint64_t first_iteration, std::size_t iterations,
                  std::size_t meta_batch, double* losses, Combination<T>& combine) {
        storage_.reserve(task_shape(family), meta_batch);
        const TaskBatchView<T> batch = storage_.view();
        const std::size_t first = combine.first_task();
        return run(iterations, meta_batch, guarded_update(), losses, [&](std::size_t k, std::size_t i, int thread) {
            sample_task(family, seed_, first_iteration + k, first + i, storage_.slot(i),
                        scratch_[static_cast<std::size_t>(thread)]);
            return batch.task(i);
        }, combine, config_.clip_grad_norm);
    }

    // Query loss and accuracy of every task after each number of inner steps in `steps`
    // (ascending): losses and accuracies are (tasks x steps.size()), row-major.
    void evaluate(const TaskBatchView<T>& batch, const std::vector<std::size_t>& steps,
                  double* losses, double* accuracies) {
        const std::size_t n = num_params(), columns = steps.size();
        const T* alpha = this->alpha(params_.data());
        const int team = budget_.team(batch.tasks, evaluation_timer_.seconds_each());
        const WorkTimer::Scope timing(evaluation_timer_, batch.tasks, team);
        parallel_for(batch.tasks, team, [&](std::size_t i, int thread) {
            MetaSgdWorkspace<Net, T>& ws = workspaces_[static_cast<std::size_t>(thread)];
            ws.reserve(n, 1);
            const TaskView<T> task = batch.task(i);
            T* current = ws.thetas.data();
            T* next = current + ws.stride(n);
            std::copy(params_.data(), params_.data() + n, current);
            std::size_t done = 0;
            for (std::size_t c = 0; c < columns; ++c) {
                for (; done < steps[c]; ++done) {
                    cancellation::throw_if_cancelled();
                    inner_step(net_, config_.loss, current, alpha + config_.alpha_at(done) * n, task.x_support,
                               task.support_rows, task.y_support, ws.network, ws.grads.data(), next);
                    std::swap(current, next);
                }
                const double loss = double(loss_value(net_, current, task.x_query, task.query_rows,
                                                      task.y_query, config_.loss, ws.network));
                // An adaptation that overflowed scores +inf (not NaN): it diverged.
                losses[i * columns + c] = std::isnan(loss) ? HUGE_VAL : loss;
                accuracies[i * columns + c] =
                    accuracy(config_.loss, task.query_rows, net_.output_width(), logits(net_, ws.network), task.y_query);
            }
        });
    }

    // theta' for one task after `steps` inner steps.
    void adapt(const T* x, std::size_t rows, const Targets<T>& y, std::size_t steps, T* out) {
        metafast::adapt(net_, config_, params_.data(), alpha(params_.data()), steps, x,
                        rows, y, workspaces_[0], out);
    }

private:
    GuardedUpdate<T> guarded_update() {
        return GuardedUpdate<T>(optimizer_, budget_.threads(), params_, state_, candidate_, candidate_state_);
    }

    // Meta-iterations whose task i of iteration k is task_of(k, i, thread) (sampled there if
    // need be), each task's slot its meta-gradient [g_theta, g_alpha]; the mean clipped to
    // norm clip_norm when it is > 0.
    template <class Update>
    FitResult run(std::size_t iterations, std::size_t tasks, const Update& update, double* scores,
                  FunctionRef<TaskView<T>(std::size_t, std::size_t, int)> task_of, Combination<T>& combine,
                  double clip_norm) {
        const std::size_t n = num_params(), width = params_.size();
        const std::uint64_t run = ++runs_;  // names this run's iterations for the transposed-theta caches
        const int team = budget_.team(tasks, task_timer_.seconds_each(), iterations);
        const WorkTimer::Scope timing(task_timer_, iterations * tasks, team);
        return run_meta_iterations(
            iterations, tasks, width, team, buffers_, update, scores,
            [&](std::size_t k, std::size_t i, int thread, const T* params) {
                const TaskView<T> task = task_of(k, i, thread);
                T* g = buffers_.slot(i, width);
                MetaSgdWorkspace<Net, T>& ws = workspaces_[static_cast<std::size_t>(thread)];
                const T* theta_t = config_.inner_steps > 0 ? ws.transposed_theta(net_, params, run, k) : nullptr;
                return double(task_meta_gradient(net_, config_, params, alpha(params), task, ws, g,
                                                 config_.learn_alpha ? g + n : nullptr, theta_t));
            },
            combine, clip_norm);
    }

    Net net_;
    MetaSgdConfig config_;
    std::uint64_t runs_ = 0;
    OptimizerConfig optimizer_;
    std::uint64_t seed_;
    ThreadBudget budget_;
    WorkTimer task_timer_, evaluation_timer_;
    Buffer<T> params_, fixed_alpha_, candidate_;
    OptimizerState<T> state_, candidate_state_;
    std::vector<MetaSgdWorkspace<Net, T>> workspaces_;
    std::vector<SampleScratch> scratch_;
    MetaBatchBuffers<T> buffers_;
    TaskBatchStorage<T> storage_;
    std::mutex mutex_;
};

}  // namespace metafast
