// OpenMP over the tasks of a meta-batch. Each index writes only its own slots, so results do
// not depend on the thread count; exceptions never leave the parallel region (the first one
// caught is rethrown after it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>

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

// Calls f(i, thread) for i in [0, n) on `threads` threads; thread is in [0, threads).
template <class F>
void parallel_for(std::size_t n, int threads, F&& f) {
    std::exception_ptr error;
    std::mutex error_mutex;
    const auto count = static_cast<long long>(n);
    const int team = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(threads, 1)), n));
#ifdef _OPENMP
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
#endif
    for (long long i = 0; i < count; ++i) {
        try {
#ifdef _OPENMP
            const int thread = omp_get_thread_num();
#else
            const int thread = 0;
#endif
            f(static_cast<std::size_t>(i), thread);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
        }
    }
    (void)team;
    if (error) std::rethrow_exception(error);
}

// mean[k] = (sum over tasks i, in task order, of slots[i * width + k]) / tasks for k in
// [first, last), a vector of elements at a time with its sum over the tasks in a register.
template <class T>
void mean_over_tasks(std::size_t tasks, std::size_t width, const T* slots, T* mean, std::size_t first,
                     std::size_t last) {
    std::size_t k = first;
#ifdef METAFAST_VECTOR_KERNELS
    using kernels::detail::load, kernels::detail::store, kernels::detail::wide;
    constexpr std::size_t L = kernels::detail::lanes<T, wide>;
    for (; k + L <= last; k += L) {
        kernels::detail::vec<T, wide> sum{};
        for (std::size_t i = 0; i < tasks; ++i) sum += load<T, wide>(slots + i * width + k);
        store<T, wide>(mean + k, sum / T(tasks));
    }
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
