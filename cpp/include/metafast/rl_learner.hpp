// A Meta-SGD learner for reinforcement learning on 2D navigation: [theta, alpha] (theta = mean
// network then log_std), Adam or SGD over it, and per-thread workspaces. Task i of meta-iteration
// k draws its goal and all its action noise from the stream keyed (seed, k, i); tasks write
// their own gradient slots and the mean is summed by the task tree (task_tree.hpp), so results
// are bit-identical for any thread and process count (fit is a run of the one meta-iteration, meta_iteration.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/cancellation.hpp"
#include "metafast/meta_iteration.hpp"
#include "metafast/optim.hpp"
#include "metafast/parallel.hpp"
#include "metafast/rl.hpp"
#include "metafast/trpo.hpp"

namespace metafast {

// How evaluate and adapt adapt a policy: each step on `trajectories` fresh trajectories, step s
// (from 0) with alpha scaled by alpha_scales[min(s, size - 1)]. MAML's evaluation: 40
// trajectories, its fixed step for the first step and half of it for the later ones (1, 0.5).
struct AdaptationSchedule {
    std::size_t trajectories;
    std::vector<double> alpha_scales{1.0};
    double scale(std::size_t step) const { return alpha_scales[std::min(step, alpha_scales.size() - 1)]; }
};

template <class T>
class MetaSgdRlLearner {
public:
    // `trpo`: the meta-update is TRPO's (fit_trpo) instead of `optimizer`'s.
    MetaSgdRlLearner(Mlp mlp, Navigation2D env, RlConfig config, OptimizerConfig optimizer, std::uint64_t seed,
                     int num_threads, std::optional<TrpoConfig> trpo = std::nullopt)
        : mlp_(std::move(mlp)), env_(env), config_(config), optimizer_(optimizer), trpo_(trpo), seed_(seed),
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
                              threads > 0 ? threads : budget_.threads(), trpo_.has_value());
    }

    // The same for a policy network `mlp`, episodes of up to `horizon` steps and `inner_steps`
    // adaptation steps, on `threads` threads (the estimate for rollouts collected elsewhere too);
    // with `trpo`, every task's adaptation kept between the passes and the search's vectors.
    static std::size_t training_bytes(const Mlp& mlp, std::size_t horizon, std::size_t inner_steps, std::size_t tasks,
                                      std::size_t trajectories, int threads, bool trpo = false) {
        const std::size_t q = mlp.num_params() + mlp.output_width(), width = 2 * q;
        std::size_t bytes = MetaBatchBuffers<T>::bytes(tasks, width) +
                            static_cast<std::size_t>(std::max(threads, 1)) *
                                RlWorkspace<T>::bytes(mlp, trajectories, horizon, inner_steps);
        if (trpo) {
            const std::size_t rows = RlWorkspace<T>::rollout_rows(trajectories, horizon), dims = mlp.output_width();
            const std::size_t per_task = (inner_steps + 1) * RlWorkspace<T>::samples_values(rows, dims) +
                                         (2 * inner_steps + 1) * q + rows * dims;  // samples, path, grads, old means
            bytes += tasks * (per_task * sizeof(T) + (inner_steps + 1) * sizeof(Samples<T>) + sizeof(TrpoTask<T>)) +
                     width * (2 * sizeof(T) + 5 * sizeof(double)) + 3 * tasks * sizeof(double);  // the search
        }
        return bytes;
    }

    // Bytes the learner's buffers hold now (what bytes_needed and learner_bytes estimate).
    std::size_t allocated_bytes() const {
        std::size_t bytes = (params_.capacity() + candidate_.capacity()) * sizeof(T) + state_.allocated_bytes() +
                            candidate_state_.allocated_bytes() + buffers_.allocated_bytes();
        for (const RlWorkspace<T>& ws : workspaces_) bytes += ws.allocated_bytes();
        for (const TrpoTask<T>& task : trpo_tasks_)
            bytes += task.allocated_values() * sizeof(T) + task.trace.steps.capacity() * sizeof(Samples<T>);
        bytes += trpo_tasks_.capacity() * sizeof(TrpoTask<T>) + search_.allocated_bytes();
        return bytes;
    }

    const Mlp& mlp() const { return mlp_; }
    const RlConfig& config() const { return config_; }
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
                                       RlWorkspace<T>& ws = workspaces_[static_cast<std::size_t>(thread)];
                                       return double(rl_task_meta_gradient(mlp_, env_, config_, theta, theta + q,
                                                                           goal, rng, ws, ws.trace, g, g + q));
                                   },
                                   combine);
    }

    const std::optional<TrpoConfig>& trpo() const { return trpo_; }

    // fit with TRPO's meta-update (docs/math.md, section 4, "TRPO's meta-update"): per
    // meta-iteration a pass over the tasks for the meta-gradient g (each task keeps its adaptation), the
    // conjugate gradient for (F + damping I) x = g, each product a pass, and a backtracking
    // line search from [theta, alpha] - sqrt(2 max_kl / x^T (F + damping I) x) x that takes the
    // first step whose surrogate is below the current one and whose mean KL is within max_kl
    // (none: no update). Every sum runs over the task tree and, in a distributed run, is
    // combined through `combine` (tasks is then this process's share): every process takes the same
    // decisions from the same bits, which do not depend on the threads or the processes.
    FitResult fit_trpo(std::uint64_t first_iteration, std::size_t iterations, std::size_t tasks, double* returns,
                       Combination<T>& combine) {
        const int team = budget_.team(tasks, task_timer_.seconds_each(), iterations);
        FitResult result{iterations, false, 0.0};
        for (std::size_t k = 0; k < iterations; ++k) {
            try {
                const double score = trpo_prepare(first_iteration + k, tasks, team, combine);
                result.last_score = score;
                const double* g = search_.gradient.data();
                if (!std::isfinite(score) || !std::isfinite(dot(g, g, 2 * policy_params()))) {
                    result = {k, true, score};
                    break;
                }
                trpo_direction(team, combine);
                trpo_line_search(team, combine);
                if (returns) returns[k] = score;
            } catch (const Cancelled&) {
                result = {k, false, result.last_score, false, true};
                break;
            } catch (const StoppedElsewhere&) {
                result = {k, false, result.last_score, true, false};
                break;
            }
        }
        return result;
    }

    // The parts of a TRPO meta-iteration, public for checking the maths (the bindings'
    // trpo_* methods); `team` threads over this process's tasks, every sum over the tasks
    // combined by `combine`.
    //
    // The first pass: meta-iteration `iteration`'s tasks, their adaptations kept and the mean
    // meta-gradient in search_.gradient (gradient()); returns the mean return after adaptation.
    double trpo_prepare(std::uint64_t iteration, std::size_t tasks, int team, Combination<T>& combine) {
        const std::size_t q = policy_params(), width = 2 * q, first = combine.first_task();
        buffers_.reserve(tasks, width);
        if (trpo_tasks_.size() < tasks) trpo_tasks_.resize(tasks);
        search_.reserve(width, tasks);
        search_.tasks = tasks;
        search_.total = combine.total_tasks(tasks);
        const WorkTimer::Scope timing(task_timer_, tasks, team);
        const TreeNode<T> sum = tree_sum(combine, width, {search_.scores.data(), nullptr}, [&] {
            parallel_for(tasks, team, [&](std::size_t i, int thread) {
                RlWorkspace<T>& ws = workspaces_[static_cast<std::size_t>(thread)];
                TrpoTask<T>& task = trpo_tasks_[i];
                CounterRng rng(seed_, iteration, first + i);
                double goal[2];
                env_.sample_goal(rng, goal);
                T* g = buffers_.slot(i, width);
                search_.scores[i] = rl_task_meta_gradient(mlp_, env_, config_, params_.data(), params_.data() + q, goal,
                                                          rng, ws, task.trace, g, g + q);
                record_old_mean(mlp_, task.trace.path.data() + config_.inner_steps * q, task, ws);
            });
        });
        task_mean(sum.values, search_.gradient.data(), nullptr);
        return sum.scores[0] / double(search_.total);
    }

    // Whether alpha stays as it is (alpha_lr 0: MAML's fixed inner step); TRPO then searches in
    // theta alone, its gradient and Fisher products restricted to theta's block.
    bool alpha_fixed() const { return optimizer_.tail_lr == 0; }

    // out = (F + damping I) v, F the mean over the prepared tasks of J^T F_task J.
    void trpo_fisher_times(const double* v, double* out, int team, Combination<T>& combine) {
        const std::size_t q = policy_params(), width = 2 * q;
        for (std::size_t i = 0; i < width; ++i) search_.direction[i] = T(v[i]);
        const TreeNode<T> sum = tree_sum(combine, width, {}, [&] {
            parallel_for(search_.tasks, team, [&](std::size_t i, int thread) {
                fisher_vector_product(mlp_, config_, params_.data() + q, trpo_tasks_[i], search_.direction.data(),
                                      workspaces_[static_cast<std::size_t>(thread)], buffers_.slot(i, width));
            });
        });
        task_mean(sum.values, out, v);
    }

    // The mean surrogate and KL over the prepared tasks of the policies adapted from
    // [theta, alpha] = z on their inner samples.
    SurrogateAndKl trpo_surrogate_and_kl(const T* z, int team, Combination<T>& combine) {
        const std::size_t q = policy_params(), n = mlp_.num_params();
        // The surrogate and the KL are the tree's two scores, without values.
        const TreeNode<T> sum = tree_sum(combine, 0, {search_.surrogates.data(), search_.kls.data()}, [&] {
            parallel_for(search_.tasks, team, [&](std::size_t i, int thread) {
                RlWorkspace<T>& ws = workspaces_[static_cast<std::size_t>(thread)];
                const TrpoTask<T>& task = trpo_tasks_[i];
                resize_exactly(ws.policy, q);
                adapted_on_trace(mlp_, z, z + q, task.trace, ws, ws.policy.data());
                const T* old = task.trace.path.data() + task.trace.steps.size() * q;
                const SurrogateAndKl values = surrogate_and_kl(mlp_, ws.policy.data(), old + n, task, ws);
                search_.surrogates[i] = values.surrogate;
                search_.kls[i] = values.kl;
            });
        });
        return {sum.scores[0] / double(search_.total), sum.scores[1] / double(search_.total)};
    }

    // The conjugate gradient from x = 0 for (F + damping I) x = gradient, cg_iterations at
    // most (fewer once the residual's square is below 1e-10), into search_.x (x()).
    void trpo_direction(int team, Combination<T>& combine) {
        const std::size_t width = 2 * policy_params();
        const double* g = search_.gradient.data();
        double *x = search_.x.data(), *r = search_.r.data(), *p = search_.p.data(), *fp = search_.fp.data();
        std::fill(x, x + width, 0.0);
        std::copy(g, g + width, r);
        std::copy(g, g + width, p);
        double rr = dot(r, r, width);
        for (std::size_t it = 0; it < trpo_->cg_iterations && rr > 1e-10; ++it) {
            trpo_fisher_times(p, fp, team, combine);
            const double curvature = dot(p, fp, width);
            if (!(curvature > 0) || !std::isfinite(curvature)) break;
            const double a = rr / curvature;
            for (std::size_t i = 0; i < width; ++i) {
                x[i] += a * p[i];
                r[i] -= a * fp[i];
            }
            const double next = dot(r, r, width);
            for (std::size_t i = 0; i < width; ++i) p[i] = r[i] + next / rr * p[i];
            rr = next;
        }
    }

    // The backtracking line search along x from the current [theta, alpha]; returns whether a
    // step was taken (then the parameters are the step's).
    bool trpo_line_search(int team, Combination<T>& combine) {
        const std::size_t width = 2 * policy_params();
        const double* x = search_.x.data();
        double* fx = search_.fp.data();
        trpo_fisher_times(x, fx, team, combine);
        const double curvature = dot(x, fx, width);
        if (!(curvature > 0) || !std::isfinite(curvature)) return false;
        const double full = std::sqrt(2.0 * trpo_->max_kl / curvature);
        const double before = trpo_surrogate_and_kl(params_.data(), team, combine).surrogate;
        T* candidate = search_.candidate.data();
        double fraction = 1.0;
        for (std::size_t t = 0; t < trpo_->line_search_steps; ++t, fraction *= trpo_->line_search_ratio) {
            for (std::size_t i = 0; i < width; ++i) candidate[i] = T(double(params_[i]) - fraction * full * x[i]);
            if (trpo_step_accepted(before, trpo_surrogate_and_kl(candidate, team, combine), trpo_->max_kl)) {
                std::copy(candidate, candidate + width, params_.data());
                return true;
            }
        }
        return false;
    }

    std::size_t trpo_prepared_tasks() const { return search_.tasks; }
    const std::vector<double>& trpo_gradient() const { return search_.gradient; }
    const std::vector<double>& trpo_x() const { return search_.x; }

    // Mean return of `trajectories` fresh trajectories after each number of adaptation steps in
    // `steps` (ascending), adapted by `schedule`, for tasks 0 .. num_tasks - 1 keyed by
    // (seed, 0, i): (tasks x steps).
    void evaluate(std::uint64_t seed, std::size_t num_tasks, const std::vector<std::size_t>& steps,
                  std::size_t trajectories, const AdaptationSchedule& schedule, double* returns) {
        const std::size_t q = policy_params(), columns = steps.size();
        RlConfig scoring = config_, adapting = config_;
        scoring.trajectories = trajectories;
        adapting.trajectories = schedule.trajectories;
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
                    adapt_step(ws.policy.data(), goal, rng, ws, ws.policy_grad.data(), adapting, schedule.scale(done));
                }
                rollout(mlp_, env_, scoring, ws.policy.data(), goal, rng, ws, ws.trace.valid);
                returns[i * columns + c] = ws.trace.valid.mean_return;
            }
        });
    }

    // The policy adapted to `goal` by `steps` inner steps of `schedule` (noise keyed by (seed,
    // iteration, 0)).
    void adapt(const double* goal, std::size_t steps, std::uint64_t seed, std::uint64_t iteration,
               const AdaptationSchedule& schedule, T* out) {
        const std::size_t q = policy_params();
        RlConfig adapting = config_;
        adapting.trajectories = schedule.trajectories;
        RlWorkspace<T>& ws = workspaces_[0];
        CounterRng rng(seed, iteration, 0);
        std::copy(params_.begin(), params_.begin() + q, out);
        ws.policy_grad.resize(q);
        for (std::size_t s = 0; s < steps; ++s) {
            cancellation::throw_if_cancelled();
            adapt_step(out, goal, rng, ws, ws.policy_grad.data(), adapting, schedule.scale(s));
        }
    }

private:
    // theta <- theta - scale * alpha * grad of the surrogate on a rollout of theta.
    void adapt_step(T* theta, const double* goal, CounterRng& rng, RlWorkspace<T>& ws, T* grad,
                    const RlConfig& adapting, double scale) {
        const std::size_t q = policy_params();
        rollout(mlp_, env_, adapting, theta, goal, rng, ws, ws.train);
        surrogate_gradient(mlp_, theta, ws.train, ws, grad);
        if (scale == 1.0) {  // alpha as trained, its bits untouched by a product
            for (std::size_t i = 0; i < q; ++i) theta[i] -= params_[q + i] * grad[i];
        } else {
            for (std::size_t i = 0; i < q; ++i) theta[i] -= T(scale) * params_[q + i] * grad[i];
        }
    }

    static double dot(const double* a, const double* b, std::size_t n) {
        double total = 0.0;
        for (std::size_t i = 0; i < n; ++i) total += a[i] * b[i];
        return total;
    }

    // Thrown where another process's share of a sum failed: this process stops there too.
    struct StoppedElsewhere {};

    // One of the search's sums over the tasks: `work` computes this process's tasks (their
    // slots of `width` values and their `scores`); the task tree's forest of them, combined by
    // `combine`, gives the root: the sums over the whole meta-batch. An error in `work` here or
    // in another process's share is passed on with the sum, so that every process stops at the
    // same sum: here it is rethrown, elsewhere it throws StoppedElsewhere.
    template <class Work>
    TreeNode<T> tree_sum(Combination<T>& combine, std::size_t width, std::array<const double*, tree_scores> scores,
                         Work&& work) {
        std::exception_ptr error;
        try {
            cancellation::throw_if_cancelled();  // a stop asked between the sums: here, with the sum
            work();
        } catch (...) {
            error = std::current_exception();
        }
        bool failed = bool(error);
        const std::size_t first = combine.first_task(), tasks = search_.tasks;
        const TaskSlots<T> leaves = buffers_.leaves(width, first, scores);
        search_.forest.reset(search_.total, first);
        if (!failed) search_.forest.reduce(leaves, first + tasks, first + tasks);
        const TreeNode<T> root = combined_root(&search_.forest, 1, leaves, tasks, combine, failed);
        if (error) std::rethrow_exception(error);
        if (failed) throw StoppedElsewhere{};
        return root;
    }

    // out = the mean over the whole meta-batch's tasks of `sum` (their summed slots), in double,
    // plus damping * damped when given.
    // With alpha fixed, alpha's half is 0 (the search stays in theta's block).
    void task_mean(const T* sum, double* out, const double* damped) {
        const std::size_t q = policy_params(), width = 2 * q;
        for (std::size_t i = 0; i < width; ++i)
            out[i] = double(sum[i]) / double(search_.total) + (damped ? trpo_->cg_damping * damped[i] : 0.0);
        if (alpha_fixed()) std::fill(out + q, out + width, 0.0);
    }

    // The vectors of a TRPO search (width values; per-task values for `tasks`).
    struct TrpoSearch {
        std::size_t tasks = 0;  // prepared, this process's
        std::size_t total = 0;  // the whole meta-batch's
        Buffer<T> direction, candidate;
        std::vector<double> gradient, x, r, p, fp, scores, surrogates, kls;
        TaskForest<T> forest;  // of a sum's tasks
        void reserve(std::size_t width, std::size_t task_count) {
            grow_exactly(direction, width);
            grow_exactly(candidate, width);
            for (std::vector<double>* v : {&gradient, &x, &r, &p, &fp}) grow_exactly(*v, width);
            for (std::vector<double>* v : {&scores, &surrogates, &kls}) grow_exactly(*v, task_count);
        }
        std::size_t allocated_bytes() const {
            std::size_t doubles = 0;
            for (const std::vector<double>* v : {&gradient, &x, &r, &p, &fp}) doubles += v->capacity();
            return (direction.capacity() + candidate.capacity()) * sizeof(T) + doubles * sizeof(double) +
                   (scores.capacity() + surrogates.capacity() + kls.capacity()) * sizeof(double);
        }
    };

    Mlp mlp_;
    Navigation2D env_;
    RlConfig config_;
    OptimizerConfig optimizer_;
    std::optional<TrpoConfig> trpo_;
    std::vector<TrpoTask<T>> trpo_tasks_;
    TrpoSearch search_;
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
