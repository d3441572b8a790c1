// A run of meta-iterations in one OpenMP parallel region: each thread takes a contiguous range
// of the meta-batch's tasks, the task gradients are summed in task order as a relay through the
// threads, and the threads share the guarded meta-optimizer update. One region per run instead
// of several per iteration, and each thread reads only the gradient slots it wrote itself
// (a mean over tasks split by elements would read most slots from other cores' caches).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
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
// within one of each other (as OpenMP's static schedule splits a loop).
struct Range {
    std::size_t first, last;
};

inline Range contiguous_range(std::size_t n, std::size_t parts, std::size_t part) {
    const std::size_t size = n / parts, extra = n % parts;
    const std::size_t first = part * size + std::min(part, extra);
    return {first, first + size + (part < extra)};
}

// Sums task slots in task order as a relay: thread c adds its own tasks' slots onto the running
// sum after thread c - 1 has added its own, so every element is summed in task order for any
// thread count, and only the running sum moves between cores.
template <class T>
class RelaySum {
public:
    explicit RelaySum(int team) : passed_(static_cast<std::size_t>(team)) {}

    // Thread `thread`'s turn in round `round` (1, 2, ...: the rounds of one relay increase).
    void add(std::uint64_t round, int thread, Range tasks, std::size_t width, const T* slots, T* sum) {
        const auto c = static_cast<std::size_t>(thread);
        if (c > 0)
            while (passed_[c - 1].round.load(std::memory_order_acquire) < round) pause();
        add_over_tasks(tasks.first, tasks.last, width, slots, sum, 0, width, c == 0);
        passed_[c].round.store(round, std::memory_order_release);
    }

private:
    static void pause() {
#if defined(__SSE2__) || defined(_M_X64)
        _mm_pause();
#endif
    }
    struct alignas(64) Flag {  // one cache line each: a waiting thread polls only its predecessor's
        std::atomic<std::uint64_t> round{0};
    };
    std::vector<Flag> passed_;
};

// Runs `iterations` meta-iterations of `tasks` tasks on up to `threads` threads.
// task_gradient(k, i, thread) computes task i of iteration k into slots[i * width ..] and returns
// its score; the iteration's score is their mean, and the update's gradient their mean slot.
// Iteration k is committed and its score written to scores[k] only when the score, the gradient
// and the new parameters are all finite; otherwise the run stops there (diverged). An exception
// in any thread stops the run at that iteration and is rethrown after the region.
template <class T, class TaskGradient>
FitResult meta_batch_loop(std::size_t iterations, std::size_t tasks, std::size_t width, int threads, T* slots,
                          double* task_scores, T* sum, T* mean, GuardedUpdate<T>& update, double* scores,
                          TaskGradient&& task_gradient) {
    const int team = static_cast<int>(std::clamp<std::size_t>(tasks, 1, static_cast<std::size_t>(std::max(threads, 1))));
    RelaySum<T> relay(team);
    FitResult result{iterations, false};
    std::exception_ptr error;
    std::mutex error_mutex;
    std::atomic<bool> failed{false};
    std::atomic<std::uint64_t> nonfinite_round{0};
    auto guarded = [&](auto&& work) {
        try {
            work();
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            failed.store(true);
        }
    };
    auto mean_of_block = [&](std::size_t first, std::size_t last) {
        for (std::size_t k = first; k < last; ++k) mean[k] = sum[k] / T(tasks);
    };
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (team > 1)
#endif
    {
        const FlushDenormals flush;
#ifdef _OPENMP
        const int thread = omp_get_thread_num();
#else
        const int thread = 0;
#endif
        const auto parts = static_cast<std::size_t>(team), part = static_cast<std::size_t>(thread);
        const Range mine = contiguous_range(tasks, parts, part);
        const Range my_blocks = contiguous_range(update.blocks(), parts, part);
        // Every thread reaches every barrier in every iteration, and all leave the loop together:
        // they decide from the same shared values, read after a barrier.
        for (std::size_t k = 0; k < iterations; ++k) {
            guarded([&] {
                for (std::size_t i = mine.first; i < mine.last; ++i) task_scores[i] = task_gradient(k, i, thread);
            });
            relay.add(k + 1, thread, mine, width, slots, sum);
#ifdef _OPENMP
#pragma omp barrier
#endif
            double score = 0.0;
            for (std::size_t i = 0; i < tasks; ++i) score += task_scores[i];
            score /= double(tasks);
            if (std::isfinite(score))
                guarded([&] {
                    for (std::size_t b = my_blocks.first; b < my_blocks.last; ++b)
                        if (!update.update_block(b, mean, mean_of_block)) nonfinite_round.store(k + 1);
                });
#ifdef _OPENMP
#pragma omp barrier
#endif
            if (failed.load() || !std::isfinite(score) || nonfinite_round.load() == k + 1) {
                if (thread == 0) result = {k, !failed.load()};
                break;
            }
#ifdef _OPENMP
#pragma omp single
#endif
            {
                update.commit();
                scores[k] = score;
            }  // (the implied barrier: nobody reads the parameters before the commit)
        }
    }
    if (error) std::rethrow_exception(error);
    return result;
}

}  // namespace metafast
