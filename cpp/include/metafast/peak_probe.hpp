// Probes of the core this build runs: its fp32 multiply-add peak and the clock, measured rather
// than assumed, so that the benchmark's "% of peak" holds on any CPU (Zen 4 runs 512-bit
// multiply-adds on 256-bit units; Intel's AVX-512 cores have two 512-bit units).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "metafast/simd.hpp"

namespace metafast::probe {

// Enough independent multiply-add chains to cover the latency of every unit, few enough that
// they stay in registers (32 vector registers with AVX-512, 16 without).
// Vectors as wide as the level's registers.
#if defined(__AVX512F__)
constexpr int fma_chains = 16;
constexpr std::size_t vector_bytes = 64;
#elif defined(__AVX__)
constexpr int fma_chains = 10;
constexpr std::size_t vector_bytes = 32;
#else  // a multiply then an add, twice the latency: more chains, all 16 registers
constexpr int fma_chains = 14;
constexpr std::size_t vector_bytes = 16;
#endif

template <class F>
double best_seconds_per_call(double seconds, F&& call) {
    using clock = std::chrono::steady_clock;
    double best = 1e300;
    const auto until = clock::now() + std::chrono::duration<double>(seconds);
    do {
        const auto started = clock::now();
        call();
        best = std::min(best, std::chrono::duration<double>(clock::now() - started).count());
    } while (clock::now() < until);
    return best;
}

// fp32 GFLOP/s of one thread running a = a * m + c on full vectors (fused where the level has
// FMA; a multiply and an add otherwise), the best of repeated runs within `seconds`.
inline double fma_peak_gflops(double seconds) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    typedef float V __attribute__((vector_size(vector_bytes)));
    constexpr std::size_t lanes = vector_bytes / sizeof(float);
    constexpr std::size_t steps = 1 << 16;
    volatile float seed = 0.999f;
    float sink = 0;
    const double best = best_seconds_per_call(seconds, [&] {
        const V m = V{} + seed, c = V{} + (1.0f - seed);
        V acc[fma_chains];
        METAFAST_UNROLL for (int i = 0; i < fma_chains; ++i) acc[i] = V{} + float(i);
        for (std::size_t s = 0; s < steps; ++s) {
            METAFAST_UNROLL for (int i = 0; i < fma_chains; ++i) acc[i] = acc[i] * m + c;
            // Keep the chains in registers, in this loop, with nothing hoisted or merged.
            METAFAST_UNROLL for (int i = 0; i < fma_chains; ++i) __asm__ volatile("" : "+v"(acc[i]));
        }
        METAFAST_UNROLL for (int i = 0; i < fma_chains; ++i) sink += acc[i][0];
    });
    volatile float keep = sink;
    (void)keep;
    return 2.0 * fma_chains * lanes * steps / best / 1e9;
#else
    (void)seconds;
    return 0.0;
#endif
}

// The core's clock in GHz: a chain of dependent integer additions, one per cycle on every
// x86-64 core since the first.
inline double clock_ghz(double seconds) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    constexpr std::size_t loops = 1 << 18, adds_per_loop = 16;
    std::uint64_t sink = 0;
    const double best = best_seconds_per_call(seconds, [&] {
        std::uint64_t x = 0;  // in a register: a copy in memory would add a store-to-load trip per loop
        for (std::size_t i = 0; i < loops; ++i)
            __asm__ volatile(
                "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
                : "+r"(x)
                : "r"(i));
        sink += x;
    });
    volatile std::uint64_t keep = sink;
    (void)keep;
    return double(loops * adds_per_loop) / best / 1e9;
#else
    (void)seconds;
    return 0.0;
#endif
}

}  // namespace metafast::probe
