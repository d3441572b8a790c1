// The one meta-iteration of every learner: `meta_step`, `meta_gradient` and the native `fit`
// of Meta-SGD, Reptile and the RL learner all run `run_meta_iterations`, so a fit of n
// iterations is n meta-steps by construction.
//
// A run is one OpenMP parallel region: each thread takes a contiguous range of the
// meta-batch's tasks, the task slots are summed in task order as a relay through the threads
// (each thread reads only the slots it wrote, still in its cache), and the threads share the
// guarded update. Threads wait on one flag per thread and round instead of barriers, two waits
// per meta-iteration, spinning briefly and then sleeping (round_flags.hpp).
//
// Three parts are the caller's:
// - the task work, task_work(k, i, thread, params) -> score: task i of iteration k at the
//   current parameters, its slot (width values) written to buffers.slot(i, width);
// - the update (GuardedUpdate for the meta-optimizers, ReptileUpdate, MeanOnly for a gradient
//   without an update): how the mean slot changes the parameters, block by block;
// - the combination of the task slots into the sum (a Combination; LocalSum here). It is the one step a
//   distributed run replaces: start the sum from the tasks of the processes before this one,
//   pass it on when this process's tasks are added, so the order, and the bits, stay those of
//   one process.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <type_traits>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/cancellation.hpp"
#include "metafast/denormals.hpp"
#include "metafast/optim.hpp"
#include "metafast/parallel.hpp"
#include "metafast/round_flags.hpp"
#include "metafast/task_batch.hpp"

namespace metafast {

struct FitResult {
    std::size_t completed;     // meta-iterations committed (and scores written)
    bool diverged;             // stopped because iteration `completed` was not finite
    double last_score;         // the score of the last iteration run, committed or not
    bool failed_elsewhere = false;  // stopped because another process's share of it failed
    bool cancelled = false;         // stopped because a stop was requested (Ctrl-C) during it
};

// Items [first, last) of n that part `part` of `parts` takes: contiguous, in order, sizes
// within one of each other, the larger ranges last (the relay's first threads finish early and
// pass the sum on while the last ones still work).
struct Range {
    std::size_t first, last;
};

inline Range contiguous_range(std::size_t n, std::size_t parts, std::size_t part) {
    const std::size_t size = n / parts, smaller = parts - n % parts;  // parts of `size` items
    const std::size_t first = part * size + (part > smaller ? part - smaller : 0);
    return {first, first + size + (part >= smaller)};
}

// Updates of fewer parameters run on one thread, the relay's last, which holds the sum in its
// cache: spread over cores they cost more in moving the sum and the new parameters between
// caches than they save. Measured on a 2-core Intel Xeon: 3,522 parameters (W4) gain 3.5% at
// 2 threads from sharing, 100 (W3) have too few blocks to share.
constexpr std::size_t shared_update_min = 1 << 11;

// Done tasks are added onto the sum up to this many at a time: one pass over the sum for them
// all, while their slots are still in cache (W4 at 1 thread: +3% on the Intel Xeon). The last
// thread of a team adds each task as it is done: its additions are on the way to the update.
constexpr std::size_t relay_batch = 8;

// A learner's buffers for its meta-batches; they grow only, so later runs allocate nothing.
template <class T>
struct MetaBatchBuffers {
    Buffer<T> slots, sum, mean;
    std::vector<double> task_scores;

    // Values from one slot to the next: each slot starts on a cache line, so that its vector
    // stores do not straddle two.
    static constexpr std::size_t stride(std::size_t width) { return cache_line_stride<T>(width); }

    // `tail`: values after the sum that a combination may use (a message's header, say).
    void reserve(std::size_t tasks, std::size_t width, std::size_t tail = 0) {
        grow_exactly(slots, slot_values(tasks, width));
        grow_exactly(sum, width + tail);
        grow_exactly(mean, width);
        grow_exactly(task_scores, tasks);
    }

    // Bytes reserve(tasks, width, tail) allocates in empty buffers.
    static std::size_t bytes(std::size_t tasks, std::size_t width, std::size_t tail) {
        return (slot_values(tasks, width) + width + tail + width) * sizeof(T) + tasks * sizeof(double);
    }

    std::size_t allocated_bytes() const {
        return (slots.capacity() + sum.capacity() + mean.capacity()) * sizeof(T) + task_scores.capacity() * sizeof(double);
    }

    // The most values a combination keeps after the sum (a distributed relay's message tail).
    static constexpr std::size_t max_tail = 16 / sizeof(T) + 1;

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
    std::size_t per_thread = 0, bytes = MetaBatchBuffers<T>::bytes(tasks, width, MetaBatchBuffers<T>::max_tail);
    if (sampled) {
        rows = std::max({rows, sampled->support_rows, sampled->query_rows});
        bytes += TaskBatchStorage<T>::bytes(*sampled, tasks);
        per_thread += SampleScratch::bytes(*sampled);
    }
    return bytes + team * (per_thread + workspace_bytes(rows));
}

// How a run combines its task slots with other processes' (a distributed run), or not (LocalSum).
// It is called twice per meta-iteration, so a virtual call costs nothing there, and every
// learner's loop is compiled once, not once per kind of combination.
template <class T>
class Combination {
public:
    virtual ~Combination() = default;
    // Whether start() waits for other processes: then the first thread computes all its tasks
    // before it starts the sum, instead of adding each task as it is done.
    virtual bool start_waits() const = 0;
    // Values of type T the combination may use right after the sum.
    virtual std::size_t tail_values() const = 0;
    // Called by the relay's first thread before it adds its first task; returns whether the
    // sum starts at zero (otherwise sum and score hold the tasks before this process's).
    // `failed`: whether a process before this one failed in this meta-iteration.
    virtual bool start(T* sum, std::size_t width, double& score, bool& failed) = 0;
    // Called by the relay's last thread once every task of this process is added to the sum and
    // the score; leaves the sum and the score of all tasks there, and in `failed` (this
    // process's on entry) whether any process failed.
    virtual void finish(T* sum, std::size_t width, double& score, bool& failed) = 0;
    // The whole meta-batch's index of this process's first task, and its number of tasks
    // given this process's share.
    virtual std::size_t first_task() const = 0;
    virtual std::size_t total_tasks(std::size_t local) const = 0;
};

// The combination of one process: the sum starts at zero and the mean divides by its tasks.
// A distributed combination (PythonRelay, over python/metafast/distributed.py) passes the sum
// on between processes.
template <class T>
class LocalSum final : public Combination<T> {
public:
    bool start_waits() const override { return false; }
    std::size_t tail_values() const override { return 0; }
    bool start(T*, std::size_t, double&, bool&) override { return true; }
    void finish(T*, std::size_t, double&, bool&) override {}
    std::size_t first_task() const override { return 0; }
    std::size_t total_tasks(std::size_t local) const override { return local; }
};

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
// buffers.mean) the mean slot, both summed in task order. Iteration k is committed and its
// score written to scores[k] (when scores is not null) only when the score, the gradient and the new parameters are all
// finite; otherwise the run stops there (diverged). An exception in any thread stops the run at
// that iteration and is rethrown after the region. With clip_norm > 0 the mean gradient is
// scaled by min(1, clip_norm / its norm) before the update, the norm summed in one fixed order
// by one thread, so that the bits do not depend on the threads.
template <class T, class Update, class TaskWork>
FitResult run_meta_iterations(std::size_t iterations, std::size_t tasks, std::size_t width, int team,
                              MetaBatchBuffers<T>& buffers, const Update& update, double* scores,
                              TaskWork&& task_work, Combination<T>& combine, double clip_norm = 0.0) {
    buffers.reserve(tasks, width, combine.tail_values());
    const bool start_waits = combine.start_waits();
    const int requested = forks::usable_team(std::clamp(team, 1, static_cast<int>(std::max<std::size_t>(tasks, 1))));
    RoundFlags relayed(static_cast<std::size_t>(requested)), updated(static_cast<std::size_t>(requested));
    FitResult result{iterations, false, 0.0};
    Update committed = update;
    std::exception_ptr error;
    std::mutex error_mutex;
    T* const slots = buffers.slots.data();
    const std::size_t stride = MetaBatchBuffers<T>::stride(width);
    T* const sum = buffers.sum.data();
    T* const mean = buffers.mean.data();
    double* const task_scores = buffers.task_scores.data();
    const T divisor = T(combine.total_tasks(tasks));
    double score = 0.0;         // of the current round: written by the relay's last thread, read after it
    T clip_scale = T(1);        // likewise: the factor that clips the mean gradient
    double prefix_score = 0.0;  // the scores before this process's tasks: written by the first thread
    bool failed_before = false;  // whether a process before this one failed: likewise
    bool failed_anywhere = false;  // written by the relay's last thread, read after it
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
        const std::size_t batch = last && size > 1 ? 1 : relay_batch;  // tasks added onto the sum at once
        const Range mine = contiguous_range(tasks, size, thread);
        const bool sole_updater = width < shared_update_min && last;
        const bool prefetch = sole_updater && size > 1;  // other cores hold copies of the parameters
        const Range my_blocks = width >= shared_update_min ? contiguous_range(update.blocks(), size, thread)
                                : sole_updater ? Range{0, update.blocks()} : Range{0, 0};
        Update own = update;  // every thread commits its copy alike
        for (std::size_t k = 0; k < iterations; ++k) {
            const std::uint64_t round = k + 1;
            // The relay: my tasks' slots go onto the sum once my predecessor has added its own;
            // as soon as that has happened, each slot right after its task, still in cache.
            std::size_t added = mine.first;
            bool from_zero = false;
            auto add_done_tasks = [&](std::size_t done) {
                if (first && added == mine.first) {
                    prefix_score = 0.0;
                    failed_before = false;
                    from_zero = combine.start(sum, width, prefix_score, failed_before);
                }
                add_over_tasks(added, done, stride, slots, sum, 0, width, from_zero && added == mine.first);
                added = done;
            };
            guarded(round, [&] {
                for (std::size_t i = mine.first; i < mine.last; ++i) {
                    cancellation::throw_if_cancelled();
                    task_scores[i] = task_work(k, i, static_cast<int>(thread), own.params());
                    if (i + 1 - added >= batch &&
                        (first ? !start_waits : relayed.passed(thread - 1, round)))
                        add_done_tasks(i + 1);
                }
            });
            if (prefetch) own.prefetch_candidate();  // while waiting for the relay
            if (!first) relayed.wait_for(thread - 1, round);
            // guarded: a distributed combination's start() (Python, MPI) may throw here
            if (added < mine.last || (first && mine.first == mine.last)) guarded(round, [&] { add_done_tasks(mine.last); });
            if (last) {  // the first thread's prefix is visible here, through the relay
                double total = prefix_score;
                for (std::size_t i = 0; i < tasks; ++i) total += task_scores[i];
                bool failed = failed_before || failed_round.load() == round;
                guarded(round, [&] { combine.finish(sum, width, total, failed); });
                failed_anywhere = failed;
                score = total / double(divisor);
                if (clip_norm > 0) clip_scale = clipping_scale(sum, width, double(divisor), clip_norm);
            }
            relayed.publish(thread, round);
            relayed.wait_for(size - 1, round);  // the sum and the score are complete

            const double iteration_score = score;
            const bool elsewhere = failed_anywhere && failed_round.load() != round;
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
