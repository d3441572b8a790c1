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

}  // namespace metafast
