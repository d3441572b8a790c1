// OpenMP over the tasks of a meta-batch. Each index writes only its own slots, so results do
// not depend on the thread count; exceptions never leave the parallel region (the first one
// caught is rethrown after it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>

#include "metafast/denormals.hpp"
#include "metafast/kernels.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace metafast {

// Threads to use for `requested` (0 = all that OpenMP offers; always 1 without OpenMP).
// The most threads a learner accepts (a request beyond the machine is a mistake, and libgomp
// ends the process when it cannot create threads).
constexpr int max_threads_allowed = 1024;

inline int resolve_threads(int requested) {
#ifdef _OPENMP
    return requested > 0 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

// Calls f(i, thread) for i in [0, n) on `threads` threads; thread is in [0, threads). Denormals
// are flushed to zero meanwhile on every thread.
template <class F>
void parallel_for(std::size_t n, int threads, F&& f) {
    std::exception_ptr error;
    std::mutex error_mutex;
    const auto count = static_cast<long long>(n);
    const int team = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(threads, 1)), n));
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (team > 1)
#endif
    {
        const FlushDenormals flush;
#ifdef _OPENMP
        const int thread = omp_get_thread_num();
#pragma omp for schedule(static) nowait
#else
        const int thread = 0;
#endif
        for (long long i = 0; i < count; ++i) {
            try {
                f(static_cast<std::size_t>(i), thread);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
            }
        }
    }
    (void)team;
    if (error) std::rethrow_exception(error);
}

#ifdef METAFAST_VECTOR_KERNELS
// mean_over_tasks for V vectors of elements from k, their sums over the tasks in registers:
// V independent additions per task hide the adder's latency (one chain would wait on it).
template <std::size_t V, class T>
void mean_over_tasks_vectors(std::size_t tasks, std::size_t width, const T* slots, T* mean, std::size_t k) {
    using kernels::detail::load, kernels::detail::store, kernels::detail::wide;
    constexpr std::size_t L = kernels::detail::lanes<T, wide>;
    kernels::detail::vec<T, wide> sum[V] = {};
    for (std::size_t i = 0; i < tasks; ++i) {
        METAFAST_UNROLL
        for (std::size_t v = 0; v < V; ++v) sum[v] += load<T, wide>(slots + i * width + k + v * L);
    }
    METAFAST_UNROLL
    for (std::size_t v = 0; v < V; ++v) store<T, wide>(mean + k + v * L, sum[v] / T(tasks));
}
#endif

// mean[k] = (sum over tasks i, in task order, of slots[i * width + k]) / tasks for k in
// [first, last), vectors of elements at a time.
template <class T>
void mean_over_tasks(std::size_t tasks, std::size_t width, const T* slots, T* mean, std::size_t first,
                     std::size_t last) {
    std::size_t k = first;
#ifdef METAFAST_VECTOR_KERNELS
    constexpr std::size_t L = kernels::detail::lanes<T, kernels::detail::wide>;
    for (; k + 8 * L <= last; k += 8 * L) mean_over_tasks_vectors<8>(tasks, width, slots, mean, k);
    for (; k + L <= last; k += L) mean_over_tasks_vectors<1>(tasks, width, slots, mean, k);
#endif
    for (; k < last; ++k) {
        T sum = 0;
        for (std::size_t i = 0; i < tasks; ++i) sum += slots[i * width + k];
        mean[k] = sum / T(tasks);
    }
}

// The same for every k. Threads split the elements, never the order of a sum, so the result
// is the same for any thread count.
template <class T>
void mean_over_tasks(std::size_t tasks, std::size_t width, const T* slots, T* mean, int threads) {
    constexpr std::size_t block = 512;
    const std::size_t blocks = (width + block - 1) / block;
    parallel_for(blocks, threads, [&](std::size_t b, int) {
        mean_over_tasks(tasks, width, slots, mean, b * block, std::min(width, (b + 1) * block));
    });
}

}  // namespace metafast
