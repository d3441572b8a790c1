// A counter in memory shared between processes (a machine's processes of a distributed run)
// that they wait on: a waiter yields its core between polls for a short while (the usual wait
// is short, and a process that is ready to compute, another share of the same meta-iteration,
// runs instead), then sleeps in the kernel (Linux's futex, which works across processes on
// shared memory) until the counter moves. Measured on 2 Zen 5 cores, 4 and 8 processes
// exchanging 14 KB per meta-iteration of 130 us of compute: yielding then sleeping ran in
// 70-82 us per iteration, sleeping at once in 93-99 us (the wakes through an idle core cost),
// polling without yielding in 125-242 us.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace metafast {

static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "a shared counter must be lock-free across processes");

// A cache line each, so that polling one does not slow the writes of another.
struct alignas(64) SharedWord {
    std::atomic<std::uint32_t> value;  // what waiters wait on (compared for equality: it may wrap)
    std::atomic<std::uint32_t> sleepers;  // waiters in the kernel: a store wakes them only when there are some

    // Stores `to` and wakes the processes sleeping on it.
    void publish(std::uint32_t to) {
        // seq_cst on both sides: either the waker sees a sleeper that registered, or the
        // sleeper's check of the value (and the kernel's, in futex) sees the new value.
        value.store(to, std::memory_order_seq_cst);
        wake_sleepers();
    }

    // Waits until the value is no longer `seen`; calls `every_tick()` every `tick` of
    // sleeping (a check that may throw: a partner gone, a stop requested).
    template <class Tick>
    void wait_while(std::uint32_t seen, std::chrono::milliseconds tick, Tick&& every_tick) {
        using clock = std::chrono::steady_clock;
        const auto yield_until = clock::now() + yield_for;
        while (value.load(std::memory_order_acquire) == seen) {
            if (clock::now() >= yield_until) return sleep_while(seen, tick, every_tick);
            std::this_thread::yield();
        }
    }

    // Wakes the processes sleeping on the value without changing it (they recheck what else
    // they wait for).
    void wake_sleepers() {
        if (sleepers.load(std::memory_order_seq_cst) > 0) wake();
    }

    // How long a waiter yields before it sleeps: the waits of one meta-iteration end within
    // it; waits across a chunk boundary (the processes' agreement in Python) or for a slow
    // partner sleep.
    static constexpr std::chrono::microseconds yield_for{2000};

private:
    template <class Tick>
    void sleep_while(std::uint32_t seen, std::chrono::milliseconds tick, Tick&& every_tick) {
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        struct Leave {
            std::atomic<std::uint32_t>& sleepers;
            ~Leave() { sleepers.fetch_sub(1, std::memory_order_seq_cst); }
        } leave{sleepers};
        while (value.load(std::memory_order_seq_cst) == seen) {
            sleep(seen, tick);
            if (value.load(std::memory_order_acquire) != seen) break;
            every_tick();
        }
        std::atomic_thread_fence(std::memory_order_acquire);
    }

#if defined(__linux__)
    // Not FUTEX_PRIVATE: the word lies in memory other processes map.
    void sleep(std::uint32_t seen, std::chrono::milliseconds tick) {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(tick).count();
        timespec timeout{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
        syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&value), FUTEX_WAIT, seen, &timeout, nullptr, 0);
    }
    void wake() { syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&value), FUTEX_WAKE, 1 << 30, nullptr, nullptr, 0); }
#else
    // Elsewhere: short sleeps, polled.
    void sleep(std::uint32_t seen, std::chrono::milliseconds tick) {
        const auto until = std::chrono::steady_clock::now() + tick;
        while (value.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    void wake() {}
#endif
};

static_assert(sizeof(SharedWord) == 64);

}  // namespace metafast
