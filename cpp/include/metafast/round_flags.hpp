// One flag per thread holding the last round (1, 2, ...) that the thread finished a phase of;
// rounds only increase, so no flag is ever reset. A waiter spins briefly (the usual wait, on an
// idle machine, is a few microseconds) and then sleeps until the flag is published: a thread
// that spins on while the one it waits for is off its core only delays it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace metafast {

class RoundFlags {
public:
    // Spins before a waiter sleeps: a few tens of microseconds.
    static constexpr unsigned spins_before_sleep = 1u << 11;

    explicit RoundFlags(std::size_t threads) : flags_(threads) {}

    void publish(std::size_t thread, std::uint64_t round) {
        flags_[thread].round.store(round, std::memory_order_seq_cst);
        // seq_cst on both sides: either a sleeper registered before this load sees it, or the
        // sleeper's own check (under the lock) sees the new round.
        if (sleepers_.load(std::memory_order_seq_cst) > 0) {
            { std::lock_guard<std::mutex> lock(mutex_); }
            wake_.notify_all();
        }
    }

    // Whether `thread` has published `round` (then its writes before are visible).
    bool passed(std::size_t thread, std::uint64_t round) const {
        return flags_[thread].round.load(std::memory_order_acquire) >= round;
    }

    // Waits until `thread` has published `round`.
    void wait_for(std::size_t thread, std::uint64_t round) {
        for (unsigned spins = 0; spins < spins_before_sleep; ++spins) {
            if (passed(thread, round)) return;
            pause();
        }
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return flags_[thread].round.load(std::memory_order_seq_cst) >= round; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
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
    std::atomic<int> sleepers_{0};
    std::mutex mutex_;
    std::condition_variable wake_;
};

}  // namespace metafast
