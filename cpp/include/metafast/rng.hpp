// A counter-based random generator: the stream of task `task` in meta-iteration `iteration`
// of a run seeded with `seed` is a pure function of those three numbers, so tasks can be
// generated inside a parallel loop and a batch is the same for any thread count.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace metafast {

// SplitMix64's finaliser (Steele, Lea and Flood 2014): a bijective 64-bit mixer.
inline std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

class CounterRng {
public:
    static constexpr std::uint64_t golden = 0x9e3779b97f4a7c15ULL;

    CounterRng(std::uint64_t seed, std::uint64_t iteration, std::uint64_t task)
        : state_(mix64(mix64(mix64(seed + golden) + iteration) + task)) {}

    // SplitMix64 from the keyed starting state.
    std::uint64_t next_u64() { return mix64(state_ += golden); }

    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }
    double uniform(double low, double high) { return low + (high - low) * uniform(); }

    // n uniforms in [low, high), the same numbers as n calls of uniform(low, high), in a loop
    // that vectorises (each output depends only on its position in the stream).
    void fill_uniform(double* out, std::size_t n, double low, double high) {
        const std::uint64_t base = state_;
        for (std::size_t i = 0; i < n; ++i) {
            const double u = double(mix64(base + (i + 1) * golden) >> 11) * 0x1.0p-53;
            out[i] = low + (high - low) * u;
        }
        state_ = base + n * golden;
    }

    // Uniform integer in [0, n) for n >= 1 (bias below 2^-53 n, irrelevant for task sizes).
    std::uint64_t below(std::uint64_t n) {
        const auto k = static_cast<std::uint64_t>(uniform() * double(n));
        return k < n ? k : n - 1;
    }

    // Standard normal by Box-Muller: two uniforms give two values, the cosine one now and the
    // sine one at the next call.
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        const double u1 = 1.0 - uniform();  // in (0, 1]
        const double u2 = uniform();
        const double radius = std::sqrt(-2.0 * std::log(u1));
        spare_ = radius * std::sin(6.283185307179586 * u2);
        has_spare_ = true;
        return radius * std::cos(6.283185307179586 * u2);
    }

private:
    std::uint64_t state_;
    double spare_ = 0.0;
    bool has_spare_ = false;
};

}  // namespace metafast
