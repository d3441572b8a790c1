// OpenMP over the tasks of a meta-batch. Each index writes only its own slots, so results do
// not depend on the thread count; exceptions never leave the parallel region (the first one
// caught is rethrown after it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>

#include "metafast/denormals.hpp"
#include "metafast/simd.hpp"
#include "metafast/thread_budget.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace metafast {

// Calls f(i, thread) for i in [0, n) on `threads` threads; thread is in [0, threads). Denormals
// are flushed to zero meanwhile on every thread.
template <class F>
void parallel_for(std::size_t n, int threads, F&& f) {
    std::exception_ptr error;
    std::mutex error_mutex;
    const auto count = static_cast<long long>(n);
    const int team = forks::usable_team(
        static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(threads, 1)), n)));
#ifdef _OPENMP
#pragma omp parallel num_threads(team) if (team > 1)
#endif
    {
        [[maybe_unused]] const FlushDenormals flush;
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
// add_over_tasks for V vectors of elements from k, their sums in registers: V independent
// additions per task hide the adder's latency (one chain would wait on it).
template <std::size_t V, class T>
void add_over_tasks_vectors(std::size_t first_task, std::size_t last_task, std::size_t stride, const T* slots, T* sum,
                            std::size_t k, bool from_zero) {
    using simd::load, simd::store, simd::wide;
    constexpr std::size_t L = simd::lanes<T, wide>;
    simd::vec<T, wide> acc[V] = {};
    if (!from_zero) {
        METAFAST_UNROLL
        for (std::size_t v = 0; v < V; ++v) acc[v] = load<T, wide>(sum + k + v * L);
    }
    for (std::size_t i = first_task; i < last_task; ++i) {
        METAFAST_UNROLL
        for (std::size_t v = 0; v < V; ++v) acc[v] += load<T, wide>(slots + i * stride + k + v * L);
    }
    METAFAST_UNROLL
    for (std::size_t v = 0; v < V; ++v) store<T, wide>(sum + k + v * L, acc[v]);
}
#endif

// sum[k] = (0 if from_zero, else sum[k]) + slots[i * stride + k] for tasks i = first_task ..
// last_task - 1, added in task order, for k in [first, last).
template <class T>
void add_over_tasks(std::size_t first_task, std::size_t last_task, std::size_t stride, const T* slots, T* sum,
                    std::size_t first, std::size_t last, bool from_zero) {
    std::size_t k = first;
#ifdef METAFAST_VECTOR_KERNELS
    constexpr std::size_t L = simd::lanes<T, simd::wide>;
    for (; k + 8 * L <= last; k += 8 * L) add_over_tasks_vectors<8>(first_task, last_task, stride, slots, sum, k, from_zero);
    for (; k + L <= last; k += L) add_over_tasks_vectors<1>(first_task, last_task, stride, slots, sum, k, from_zero);
#endif
    for (; k < last; ++k) {
        T acc = from_zero ? T(0) : sum[k];
        for (std::size_t i = first_task; i < last_task; ++i) acc += slots[i * stride + k];
        sum[k] = acc;
    }
}

}  // namespace metafast
