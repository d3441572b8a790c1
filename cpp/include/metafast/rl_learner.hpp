// A Meta-SGD learner for reinforcement learning on 2D navigation: [theta, alpha] (theta = mean
// network then log_std), Adam or SGD over it, and per-thread workspaces. Task i of meta-iteration
// k draws its goal and all its action noise from the stream keyed (seed, k, i); tasks write
// their own gradient slots and the mean is summed in task order, so results are bit-identical
// for any thread count (fit is a run of the one meta-iteration, meta_iteration.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/cancellation.hpp"
#include "metafast/meta_iteration.hpp"
#include "metafast/optim.hpp"
#include "metafast/parallel.hpp"
#include "metafast/rl.hpp"

namespace metafast {

template <class T>
class MetaSgdRlLearner {
public:
    MetaSgdRlLearner(Mlp mlp, Navigation2D env, RlConfig config, OptimizerConfig optimizer, std::uint64_t seed,
                     int num_threads)
        : mlp_(std::move(mlp)), env_(env), config_(config), optimizer_(optimizer), seed_(seed),
          params_(2 * policy_params(), T(0)) {
        optimizer_.tail_from = policy_params();  // alpha learns at optimizer.tail_lr
        state_.reset(params_.size());
        set_num_threads(num_threads);
    }

    // Bytes a learner of a policy of `policy_params` parameters keeps for its life: [theta,
    // alpha], the meta-optimizer's state, the candidate update and its state (GuardedUpdate).
    static std::size_t learner_bytes(std::size_t policy_params) {
        const std::size_t width = 2 * policy_params;
        return (width + 2 * width + width + 2 * width) * sizeof(T);
    }

    // Bytes a run of `tasks` tasks (0 for evaluation) with rollouts of `trajectories`
    // trajectories on `threads` threads (0: the learner's) adds: the task slots and sums, and
    // every thread's rollout workspace.
    std::size_t bytes_needed(std::size_t tasks, std::size_t trajectories, int threads) const {
        return training_bytes(mlp_, env_.horizon, config_.inner_steps, tasks, trajectories,
                              threads > 0 ? threads : budget_.threads());
    }

    // The same for a policy network `mlp`, episodes of up to `horizon` steps and `inner_steps`
    // adaptation steps, on `threads` threads (the estimate for rollouts collected elsewhere too).
    static std::size_t training_bytes(const Mlp& mlp, std::size_t horizon, std::size_t inner_steps, std::size_t tasks,
                                      std::size_t trajectories, int threads) {
        const std::size_t width = 2 * (mlp.num_params() + mlp.output_width());
        return MetaBatchBuffers<T>::bytes(tasks, width, MetaBatchBuffers<T>::max_tail) +
               static_cast<std::size_t>(std::max(threads, 1)) * RlWorkspace<T>::bytes(mlp, trajectories, horizon, inner_steps);
    }

    // Bytes the learner's buffers hold now (what bytes_needed and learner_bytes estimate).
    std::size_t allocated_bytes() const {
        std::size_t bytes = (params_.capacity() + candidate_.capacity()) * sizeof(T) + state_.allocated_bytes() +
                            candidate_state_.allocated_bytes() + buffers_.allocated_bytes();
        for (const RlWorkspace<T>& ws : workspaces_) bytes += ws.allocated_bytes();
        return bytes;
    }

    const Mlp& mlp() const { return mlp_; }
    std::size_t policy_params() const { return mlp_.num_params() + mlp_.output_width(); }
    std::size_t num_params() const { return policy_params(); }  // theta's length, as every learner names it
    std::mutex& mutex() { return mutex_; }
    Buffer<T>& params() { return params_; }  // [theta, alpha]
    OptimizerState<T>& optimizer_state() { return state_; }
    int num_threads() const { return budget_.threads(); }
    void set_num_threads(int requested) {
        budget_.set(requested);
        workspaces_.resize(static_cast<std::size_t>(budget_.threads()));
    }

    // Meta-iterations first_iteration .. + iterations - 1 of meta_batch tasks each; writes the
    // mean return after adaptation of each completed iteration.
    // With a distributed `combine`, meta_batch is this process's share.
    FitResult fit(std::uint64_t first_iteration, std::size_t iterations, std::size_t meta_batch, double* returns,
                  Combination<T>& combine) {
        const std::size_t first = combine.first_task();
        const std::size_t q = policy_params(), width = 2 * q;
        const int team = budget_.team(meta_batch, task_timer_.seconds_each(), iterations);
        const WorkTimer::Scope timing(task_timer_, iterations * meta_batch, team);
        return run_meta_iterations(iterations, meta_batch, width, team, buffers_,
                                   GuardedUpdate<T>(optimizer_, budget_.threads(), params_, state_, candidate_,
                                                    candidate_state_),
                                   returns, [&](std::size_t k, std::size_t i, int thread, const T* theta) {
                                       CounterRng rng(seed_, first_iteration + k, first + i);
                                       double goal[2];
                                       env_.sample_goal(rng, goal);
                                       T* g = buffers_.slot(i, width);
                                       return double(rl_task_meta_gradient(
                                           mlp_, env_, config_, theta, theta + q, goal, rng,
                                           workspaces_[static_cast<std::size_t>(thread)], g, g + q));
                                   },
                                   combine);
    }

    // Mean return of `trajectories` fresh trajectories after each number of adaptation steps in
    // `steps` (ascending), for tasks 0 .. num_tasks - 1 keyed by (seed, 0, i): (tasks x steps).
    void evaluate(std::uint64_t seed, std::size_t num_tasks, const std::vector<std::size_t>& steps,
                  std::size_t trajectories, double* returns) {
        const std::size_t q = policy_params(), columns = steps.size();
        RlConfig scoring = config_;
        scoring.trajectories = trajectories;
        const int team = budget_.team(num_tasks, evaluation_timer_.seconds_each());
        const WorkTimer::Scope timing(evaluation_timer_, num_tasks, team);
        parallel_for(num_tasks, team, [&](std::size_t i, int thread) {
            RlWorkspace<T>& ws = workspaces_[static_cast<std::size_t>(thread)];
            CounterRng rng(seed, 0, i);
            double goal[2];
            env_.sample_goal(rng, goal);
            ws.policy.assign(params_.begin(), params_.begin() + q);
            ws.policy_grad.resize(q);
            std::size_t done = 0;
            for (std::size_t c = 0; c < columns; ++c) {
                for (; done < steps[c]; ++done) {
                    cancellation::throw_if_cancelled();
                    adapt_step(ws.policy.data(), goal, rng, ws, ws.policy_grad.data());
                }
                rollout(mlp_, env_, scoring, ws.policy.data(), goal, rng, ws, ws.valid);
                returns[i * columns + c] = ws.valid.mean_return;
            }
        });
    }

    // The policy adapted to `goal` by `steps` inner steps (noise keyed by (seed, iteration, 0)).
    void adapt(const double* goal, std::size_t steps, std::uint64_t seed, std::uint64_t iteration, T* out) {
        const std::size_t q = policy_params();
        RlWorkspace<T>& ws = workspaces_[0];
        CounterRng rng(seed, iteration, 0);
        std::copy(params_.begin(), params_.begin() + q, out);
        ws.policy_grad.resize(q);
        for (std::size_t s = 0; s < steps; ++s) {
            cancellation::throw_if_cancelled();
            adapt_step(out, goal, rng, ws, ws.policy_grad.data());
        }
    }

private:
    // theta <- theta - alpha * grad of the surrogate on a rollout of theta.
    void adapt_step(T* theta, const double* goal, CounterRng& rng, RlWorkspace<T>& ws, T* grad) {
        const std::size_t q = policy_params();
        rollout(mlp_, env_, config_, theta, goal, rng, ws, ws.train);
        surrogate_gradient(mlp_, theta, ws.train, ws, grad);
        for (std::size_t i = 0; i < q; ++i) theta[i] -= params_[q + i] * grad[i];
    }

    Mlp mlp_;
    Navigation2D env_;
    RlConfig config_;
    OptimizerConfig optimizer_;
    std::uint64_t seed_;
    ThreadBudget budget_;
    WorkTimer task_timer_, evaluation_timer_;
    Buffer<T> params_, candidate_;
    MetaBatchBuffers<T> buffers_;
    OptimizerState<T> state_, candidate_state_;
    std::vector<RlWorkspace<T>> workspaces_;
    std::mutex mutex_;
};

}  // namespace metafast
