// A run of meta-iterations in one OpenMP parallel region: each thread takes a contiguous range
// of the meta-batch's tasks, the task gradients are summed in task order as a relay through the
// threads, and the threads share the guarded meta-optimizer update. One region per run instead
// of several per iteration; each thread reads only the gradient slots it wrote itself (a mean
// over tasks split by elements reads most slots from other cores' caches); and threads wait on
// one flag per thread and round instead of barriers, two waits per meta-iteration.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/denormals.hpp"
#include "metafast/optim.hpp"
#include "metafast/parallel.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace metafast {

struct FitResult {
    std::size_t completed;  // meta-iterations done (and scores written)
    bool diverged;          // stopped because iteration `completed` was not finite
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

// Updates of up to this many parameters run on one thread, the relay's last, which holds the
// sum in its cache: spread over cores they cost more in moving the sum and the new parameters
// between caches than they save.
constexpr std::size_t shared_update_min = 1 << 15;

// One flag per thread holding the last round (1, 2, ...) that the thread finished a phase of;
// rounds only increase, so no flag is ever reset.
class RoundFlags {
public:
    explicit RoundFlags(std::size_t threads) : flags_(threads) {}

    void publish(std::size_t thread, std::uint64_t round) { flags_[thread].round.store(round, std::memory_order_release); }

    // Whether `thread` has published `round` (then its writes before are visible).
    bool passed(std::size_t thread, std::uint64_t round) const {
        return flags_[thread].round.load(std::memory_order_acquire) >= round;
    }

    // Waits until `thread` has published `round`.
    void wait_for(std::size_t thread, std::uint64_t round) const {
        for (unsigned spins = 0; !passed(thread, round); ++spins) {
            if (spins < 1u << 10) pause();
            else std::this_thread::yield();  // more threads than cores: let the one we wait for run
        }
    }

private:
    static void pause() {
#if defined(__SSE2__) || defined(_M_X64)
        _mm_pause();
#endif
    }
    struct alignas(64) Flag {  // a cache line each: a thread polls only the flags it waits for
        std::atomic<std::uint64_t> round{0};
    };
    std::vector<Flag> flags_;
};

// Runs `iterations` meta-iterations of `tasks` tasks on up to `threads` threads.
// task_gradient(k, i, thread, params) computes task i of iteration k at the current parameters
// into slots[i * width ..] and returns its score; the iteration's score is their mean, and the
// update's gradient (written to mean) their mean slot, summed in task order. Iteration k is
// committed and its score written to scores[k] only when the score, the gradient and the new
// parameters are all finite; otherwise the run stops there (diverged). An exception in any
// thread stops the run at that iteration and is rethrown after the region.
template <class T, class TaskGradient>
FitResult meta_batch_loop(std::size_t iterations, std::size_t tasks, std::size_t width, int threads, T* slots,
                          double* task_scores, T* sum, T* mean, const GuardedUpdate<T>& update, double* scores,
                          TaskGradient&& task_gradient) {
    const int requested = static_cast<int>(std::clamp<std::size_t>(tasks, 1, static_cast<std::size_t>(std::max(threads, 1))));
    RoundFlags relayed(static_cast<std::size_t>(requested)), updated(static_cast<std::size_t>(requested));
    FitResult result{iterations, false};
    GuardedUpdate<T> committed = update;
    std::exception_ptr error;
    std::mutex error_mutex;
    // Rounds in which something failed: only those rounds' values, so a fast thread's next
    // round cannot change what a slow thread reads for this one.
    std::atomic<std::uint64_t> failed_round{0}, nonfinite_round{0};
    auto guarded = [&](std::uint64_t round, auto&& work) {
        try {
            work();
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            failed_round.store(round);
        }
    };
    auto mean_of_block = [&](std::size_t first, std::size_t last) {
        for (std::size_t k = first; k < last; ++k) mean[k] = sum[k] / T(tasks);
    };
#ifdef _OPENMP
#pragma omp parallel num_threads(requested) if (requested > 1)
#endif
    {
        [[maybe_unused]] const FlushDenormals flush;
#ifdef _OPENMP
        const auto team = static_cast<std::size_t>(omp_get_num_threads());  // the runtime may give fewer
        const auto thread = static_cast<std::size_t>(omp_get_thread_num());
#else
        const std::size_t team = 1, thread = 0;
#endif
        const Range mine = contiguous_range(tasks, team, thread);
        const bool sole_updater = width < shared_update_min && thread + 1 == team;
        const bool prefetch = sole_updater && team > 1;  // other cores hold copies of the parameters
        const Range my_blocks = width >= shared_update_min ? contiguous_range(update.blocks(), team, thread)
                                : sole_updater ? Range{0, update.blocks()} : Range{0, 0};
        GuardedUpdate<T> own = update;  // every thread commits its copy alike
        for (std::size_t k = 0; k < iterations; ++k) {
            const std::uint64_t round = k + 1;
            // The relay: my tasks' slots go onto the sum once my predecessor has added its own;
            // as soon as that has happened, each slot right after its task, still in cache.
            std::size_t added = mine.first;
            auto add_done_tasks = [&](std::size_t done) {
                add_over_tasks(added, done, width, slots, sum, 0, width, thread == 0 && added == mine.first);
                added = done;
            };
            guarded(round, [&] {
                for (std::size_t i = mine.first; i < mine.last; ++i) {
                    task_scores[i] = task_gradient(k, i, static_cast<int>(thread), own.params());
                    if (thread == 0 || relayed.passed(thread - 1, round)) add_done_tasks(i + 1);
                }
            });
            if (prefetch) own.prefetch_candidate();  // while waiting for the relay
            if (thread > 0) relayed.wait_for(thread - 1, round);
            if (added < mine.last || (thread == 0 && mine.first == mine.last)) add_done_tasks(mine.last);
            relayed.publish(thread, round);
            relayed.wait_for(team - 1, round);  // the sum (and every task's score) is complete

            double score = 0.0;
            for (std::size_t i = 0; i < tasks; ++i) score += task_scores[i];
            score /= double(tasks);
            if (std::isfinite(score))
                guarded(round, [&] {
                    for (std::size_t b = my_blocks.first; b < my_blocks.last; ++b)
                        if (!own.update_block(b, mean, mean_of_block)) nonfinite_round.store(round);
                });
            updated.publish(thread, round);
            for (std::size_t c = 0; c < team; ++c) updated.wait_for(c, round);

            if (failed_round.load() == round || nonfinite_round.load() == round || !std::isfinite(score)) {
                if (thread == 0) result = {k, failed_round.load() != round};
                break;  // every thread, at the same round
            }
            own.commit();
            if (thread == 0) scores[k] = score;
        }
        if (thread == 0) committed = own;
    }
    committed.finish();
    if (error) std::rethrow_exception(error);
    return result;
}

}  // namespace metafast
