// The one meta-iteration of every learner: `meta_step`, `meta_gradient` and the native `fit`
// of Meta-SGD, Reptile and the RL learner all run `run_meta_iterations`, so a fit of n
// iterations is n meta-steps by construction.
//
// A run is one OpenMP parallel region: each thread takes a contiguous range of the
// meta-batch's tasks and reduces their slots, as they are done, to the range's forest of the
// fixed pairwise tree over the task indices (task_tree.hpp); the last thread merges the team's
// forests, and the threads share the guarded update. Threads wait on one flag per thread and
// round instead of barriers, two waits per meta-iteration, spinning briefly and then sleeping
// (round_flags.hpp).
//
// Three parts are the caller's:
// - the task work, task_work(k, i, thread, params) -> score: task i of iteration k at the
//   current parameters, its slot (width values) written to buffers.slot(i, width);
// - the update (GuardedUpdate for the meta-optimizers, ReptileUpdate, MeanOnly for a gradient
//   without an update): how the mean slot changes the parameters, block by block;
// - the combination of this process's forest with the other processes' (a Combination;
//   LocalSum here): the one step a distributed run replaces. The tree does not depend on the
//   split of the tasks, so the sum, and the bits, are those of one process with one thread.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/cancellation.hpp"
#include "metafast/denormals.hpp"
#include "metafast/optim.hpp"
#include "metafast/parallel.hpp"
#include "metafast/round_flags.hpp"
#include "metafast/task_batch.hpp"
#include "metafast/task_tree.hpp"

namespace metafast {

struct FitResult {
    std::size_t completed;     // meta-iterations committed (and scores written)
    bool diverged;             // stopped because iteration `completed` was not finite
    double last_score;         // the score of the last iteration run, committed or not
    bool failed_elsewhere = false;  // stopped because another process's share of it failed
    bool cancelled = false;         // stopped because a stop was requested (Ctrl-C) during it
};

// Items [first, last) of n that part `part` of `parts` takes: contiguous, in order, sizes
// within one of each other, the larger ranges last (the first threads finish early; the last
// one merges the forests).
struct Range {
    std::size_t first, last;
};

inline Range contiguous_range(std::size_t n, std::size_t parts, std::size_t part) {
    const std::size_t size = n / parts, smaller = parts - n % parts;  // parts of `size` items
    const std::size_t first = part * size + (part > smaller ? part - smaller : 0);
    return {first, first + size + (part >= smaller)};
}

// Updates of fewer parameters run on one thread, the team's last, which holds the sum in its
// cache: spread over cores they cost more in moving the sum and the new parameters between
// caches than they save. Measured on a 2-core Intel Xeon: 3,522 parameters (W4) gain 3.5% at
// 2 threads from sharing, 100 (W3) have too few blocks to share.
constexpr std::size_t shared_update_min = 1 << 11;

// A learner's buffers for its meta-batches; they grow only, so later runs allocate nothing.
template <class T>
struct MetaBatchBuffers {
    Buffer<T> slots, mean;
    std::vector<double> task_scores;

    // Values from one slot to the next: each slot starts on a cache line, so that its vector
    // stores do not straddle two.
    static constexpr std::size_t stride(std::size_t width) { return cache_line_stride<T>(width); }

    void reserve(std::size_t tasks, std::size_t width) {
        grow_exactly(slots, slot_values(tasks, width));
        grow_exactly(mean, width);
        grow_exactly(task_scores, tasks);
    }

    // Bytes reserve(tasks, width) allocates in empty buffers.
    static std::size_t bytes(std::size_t tasks, std::size_t width) {
        return (slot_values(tasks, width) + width) * sizeof(T) + tasks * sizeof(double);
    }

    std::size_t allocated_bytes() const {
        return (slots.capacity() + mean.capacity()) * sizeof(T) + task_scores.capacity() * sizeof(double);
    }

    // This process's slots (of `width` values) as the tree's leaves, tasks first_task ...,
    // with `scores` (by default the task scores).
    TaskSlots<T> leaves(std::size_t width, std::size_t first_task, std::array<const double*, tree_scores> scores) {
        return {slots.data(), stride(width), width, first_task, scores};
    }
    TaskSlots<T> leaves(std::size_t width, std::size_t first_task) {
        return leaves(width, first_task, {task_scores.data(), nullptr});
    }

    T* slot(std::size_t task, std::size_t width) { return slots.data() + task * stride(width); }

private:
    static std::size_t slot_values(std::size_t tasks, std::size_t width) { return tasks * stride(width); }
};

// Bytes a run of `tasks` tasks on `team` threads adds to a learner whose meta-batch vectors
// have `width` values: the task slots and sums, every thread's workspace for tasks of up to
// `rows` rows (`workspace_bytes(rows)`), and with `sampled` (the shape of a family fit samples
// from) the sampled batch and the samplers' scratch. The learners' bytes_needed, from the same
// sizes their reserve calls use.
template <class T, class WorkspaceBytes>
std::size_t meta_batch_bytes(std::size_t tasks, std::size_t width, std::size_t rows, const TaskShape* sampled,
                             std::size_t team, WorkspaceBytes workspace_bytes) {
    std::size_t per_thread = 0, bytes = MetaBatchBuffers<T>::bytes(tasks, width);
    if (sampled) {
        rows = std::max({rows, sampled->support_rows, sampled->query_rows});
        bytes += TaskBatchStorage<T>::bytes(*sampled, tasks);
        per_thread += SampleScratch::bytes(*sampled);
    }
    return bytes + team * (per_thread + workspace_bytes(rows));
}

// How a run combines this process's forest of the task tree with other processes' (a
// distributed run), or not (LocalSum). It is called once per meta-iteration (or per sum), so
// a virtual call costs nothing there, and every learner's loop is compiled once, not once per
// kind of combination.
template <class T>
class Combination {
public:
    virtual ~Combination() = default;
    // Called with the forest of this process's tasks (first_task() onwards; `width` values per
    // node), complete or, where `failed` (this process's share failed), of the right shape;
    // leaves the root of the whole meta-batch there, one node, and in `failed` whether any
    // process failed.
    virtual void combine(TaskForest<T>& forest, std::size_t width, bool& failed) = 0;
    // The whole meta-batch's index of this process's first task, and its number of tasks
    // given this process's share.
    virtual std::size_t first_task() const = 0;
    virtual std::size_t total_tasks(std::size_t local) const = 0;
};

// The combination of one process: its forest is the root already.
// A distributed combination (PythonRelay, over python/metafast/distributed.py) merges the
// processes' forests.
template <class T>
class LocalSum final : public Combination<T> {
public:
    void combine(TaskForest<T>&, std::size_t, bool&) override {}
    std::size_t first_task() const override { return 0; }
    std::size_t total_tasks(std::size_t local) const override { return local; }
};

// Merges the forests of a team's threads (forests[0 .. team - 1], adjacent ranges in order)
// into forests[0], combines it with the other processes' and returns the root: the sum of the
// meta-batch's slots and scores. Where `failed` (on entry: this process's share failed; on
// return: any process's), only the shapes of the forests are right.
template <class T>
const TreeNode<T>& combined_root(TaskForest<T>* forests, std::size_t team, const TaskSlots<T>& leaves,
                                 std::size_t tasks, Combination<T>& combine, bool& failed) {
    TaskForest<T>& merged = forests[0];
    if (failed) {
        merged.cover(leaves, leaves.first, leaves.first + tasks);
    } else {
        for (std::size_t t = 1; t < team; ++t)
            for (std::size_t n = 0; n < forests[t].size(); ++n) merged.push(forests[t][n], leaves.width);
    }
    combine.combine(merged, leaves.width, failed);
    if (merged.size() != 1) throw std::logic_error("the task tree did not reduce to its root");
    return merged[0];
}

// The update that only leaves the mean slot: meta_gradient.
template <class T>
class MeanOnly {
public:
    MeanOnly(const T* params, std::size_t width, int threads)
        : params_(params), width_(width), block_(update_block_size(width, threads)) {}
    std::size_t blocks() const { return (width_ + block_ - 1) / block_; }
    const T* params() const { return params_; }
    template <class Prepare>
    bool update_block(std::size_t b, T*, Prepare&& prepare) const {
        prepare(b * block_, std::min(width_, (b + 1) * block_));
        return true;
    }
    void prefetch_candidate() const {}
    void commit() {}
    void finish() const {}

private:
    const T* params_;
    std::size_t width_, block_;
};

// min(1, clip_norm / |sum / divisor|): the factor that clips the mean of the slots to norm
// clip_norm (1 for a norm that is not finite: the update's finiteness check stops it).
template <class T>
T clipping_scale(const T* sum, std::size_t width, double divisor, double clip_norm) {
    double squares = 0.0;
    for (std::size_t k = 0; k < width; ++k) squares += double(sum[k]) * double(sum[k]);
    const double norm = std::sqrt(squares) / divisor;
    return std::isfinite(norm) && norm > clip_norm ? T(clip_norm / norm) : T(1);
}

// Runs `iterations` meta-iterations of `tasks` tasks (this process's share of the meta-batch,
// combined with the others' by `combine`) on a team of up to `team` threads. The
// iteration's score is the mean of its task scores and the update's gradient (left in
// buffers.mean) the mean slot, both summed by the task tree. Iteration k is committed and its
// score written to scores[k] (when scores is not null) only when the score, the gradient and the new parameters are all
// finite; otherwise the run stops there (diverged). An exception in any thread stops the run at
// that iteration and is rethrown after the region. With clip_norm > 0 the mean gradient is
// scaled by min(1, clip_norm / its norm) before the update, the norm summed in one fixed order
// by one thread, so that the bits do not depend on the threads.
template <class T, class Update, class TaskWork>
FitResult run_meta_iterations(std::size_t iterations, std::size_t tasks, std::size_t width, int team,
                              MetaBatchBuffers<T>& buffers, const Update& update, double* scores,
                              TaskWork&& task_work, Combination<T>& combine, double clip_norm = 0.0) {
    buffers.reserve(tasks, width);
    const int requested = forks::usable_team(std::clamp(team, 1, static_cast<int>(std::max<std::size_t>(tasks, 1))));
    RoundFlags relayed(static_cast<std::size_t>(requested)), updated(static_cast<std::size_t>(requested));
    FitResult result{iterations, false, 0.0};
    Update committed = update;
    std::exception_ptr error;
    std::mutex error_mutex;
    T* const mean = buffers.mean.data();
    double* const task_scores = buffers.task_scores.data();
    const std::size_t total = combine.total_tasks(tasks), first_task = combine.first_task();
    const TaskSlots<T> leaves = buffers.leaves(width, first_task);
    const T divisor = T(total);
    // One forest per thread, of its tasks; the last thread merges them into the first.
    std::vector<TaskForest<T>> forests(static_cast<std::size_t>(requested), TaskForest<T>(total));
    const T* sum = nullptr;     // the root's values: written by the team's last thread, read after it
    double score = 0.0;         // likewise: the mean score
    T clip_scale = T(1);        // likewise: the factor that clips the mean gradient
    bool failed_anywhere = false;  // likewise
    // Rounds in which something failed: only those rounds' values, so a fast thread's next
    // round cannot change what a slow thread reads for this one.
    std::atomic<std::uint64_t> failed_round{0}, nonfinite_round{0}, cancelled_round{0};
    auto guarded = [&](std::uint64_t round, auto&& work) {
        try {
            work();
        } catch (const Cancelled&) {  // the round fails everywhere, as for an error, but nothing is rethrown
            cancelled_round.store(round);
            failed_round.store(round);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            failed_round.store(round);
        }
    };
    auto mean_of_block = [&](std::size_t first, std::size_t last) {
        for (std::size_t k = first; k < last; ++k) mean[k] = sum[k] / divisor;
        if (clip_scale < T(1))
            for (std::size_t k = first; k < last; ++k) mean[k] *= clip_scale;
    };
#ifdef _OPENMP
#pragma omp parallel num_threads(requested) if (requested > 1)
#endif
    {
        [[maybe_unused]] const FlushDenormals flush;
#ifdef _OPENMP
        const auto size = static_cast<std::size_t>(omp_get_num_threads());  // the runtime may give fewer
        const auto thread = static_cast<std::size_t>(omp_get_thread_num());
#else
        const std::size_t size = 1, thread = 0;
#endif
        const bool first = thread == 0, last = thread + 1 == size;
        const Range mine = contiguous_range(tasks, size, thread);
        const bool sole_updater = width < shared_update_min && last;
        const bool prefetch = sole_updater && size > 1;  // other cores hold copies of the parameters
        const Range my_blocks = width >= shared_update_min ? contiguous_range(update.blocks(), size, thread)
                                : sole_updater ? Range{0, update.blocks()} : Range{0, 0};
        TaskForest<T>& forest = forests[thread];
        Update own = update;  // every thread commits its copy alike
        for (std::size_t k = 0; k < iterations; ++k) {
            const std::uint64_t round = k + 1;
            // My tasks, each reduced into my forest as soon as its group of the tree is done,
            // its slot still in cache.
            forest.reset(total, first_task + mine.first);
            guarded(round, [&] {
                for (std::size_t i = mine.first; i < mine.last; ++i) {
                    cancellation::throw_if_cancelled();
                    task_scores[i] = task_work(k, i, static_cast<int>(thread), own.params());
                    forest.reduce(leaves, first_task + i + 1, first_task + mine.last);
                }
            });
            if (prefetch) own.prefetch_candidate();  // while the other threads finish
            if (last) {
                for (std::size_t c = 0; c + 1 < size; ++c) relayed.wait_for(c, round);
                bool failed = failed_round.load() == round;
                // guarded: a distributed combination (Python, MPI) may throw here
                guarded(round, [&] {
                    const TreeNode<T>& root = combined_root(forests.data(), size, leaves, tasks, combine, failed);
                    sum = root.values;
                    score = root.scores[0] / double(divisor);
                });
                failed_anywhere = failed || failed_round.load() == round;
                if (clip_norm > 0 && !failed_anywhere) clip_scale = clipping_scale(sum, width, double(divisor), clip_norm);
            }
            relayed.publish(thread, round);
            relayed.wait_for(size - 1, round);  // the sum and the score are complete

            const double iteration_score = score;
            const bool elsewhere = failed_anywhere && failed_round.load() != round;
            if (!failed_anywhere)  // else the sum may not exist
                guarded(round, [&] {
                    for (std::size_t b = my_blocks.first; b < my_blocks.last; ++b)
                        if (!own.update_block(b, mean, mean_of_block)) nonfinite_round.store(round);
                });
            updated.publish(thread, round);
            for (std::size_t c = 0; c < size; ++c) updated.wait_for(c, round);

            if (first) result.last_score = iteration_score;
            if (elsewhere || failed_round.load() == round || nonfinite_round.load() == round ||
                !std::isfinite(iteration_score)) {
                const bool cancelled = cancelled_round.load() == round;
                if (first)
                    result = {k, !elsewhere && failed_round.load() != round, iteration_score, elsewhere && !cancelled,
                              cancelled};
                break;  // every thread, at the same round
            }
            own.commit();
            if (first && scores) scores[k] = iteration_score;
        }
        if (first) committed = own;
    }
    committed.finish();
    if (error) std::rethrow_exception(error);
    return result;
}

}  // namespace metafast
