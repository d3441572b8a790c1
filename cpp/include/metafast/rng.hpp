// A counter-based random generator: the stream of task `task` in meta-iteration `iteration`
// of a run seeded with `seed` is a pure function of those three numbers, so tasks can be
// generated inside a parallel loop and a batch is the same for any thread count.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "metafast/box_muller.hpp"

namespace metafast {

// SplitMix64's finaliser (Steele, Lea and Flood 2014): a bijective 64-bit mixer.
// Templated so that it also mixes whole vectors of words.
template <class Word>
inline Word mix64(Word z) {
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
    double uniform() { return unit(state_ += golden); }
    double uniform(double low, double high) { return low + (high - low) * uniform(); }

    // n uniforms in [low, high), the same numbers as n calls of uniform(low, high), a vector of
    // them at a time (each output depends only on its position in the stream).
    void fill_uniform(double* out, std::size_t n, double low, double high) {
        std::size_t i = 0;
#ifdef METAFAST_VECTOR_KERNELS
        using box_muller::Doubles, box_muller::lanes;
        Words counter = first_counters(state_);
        // (high - low) 2^-53 k is the same number as (high - low) (2^-53 k): scaling by a power
        // of two is exact, so one multiply fewer gives the same bits.
        const double step = (high - low) * 0x1.0p-53;
        for (; i + lanes <= n; i += lanes, counter += lanes * golden)
            simd::store<double, box_muller::wide>(out + i, low + step * integers(counter));
#endif
        for (; i < n; ++i) out[i] = low + (high - low) * unit(state_ + (i + 1) * golden);
        state_ += n * golden;
    }

    // n uniforms in [low, high) with 32 random bits each, two from every output of the stream:
    // value 2j from the low half k of output j, value 2j + 1 from its high half, each
    // low + ((high - low) 2^-32) k. Half the mixing of fill_uniform, for task inputs that are
    // stored as float32 (24-bit mantissas) anyway. On [-1, 1) every value is exact (a multiple
    // of 2^-31), so vector and scalar paths, fused multiply-adds or not, give the same bits.
    void fill_uniform32(double* out, std::size_t n, double low, double high) {
        const double step = (high - low) * 0x1.0p-32;
        std::size_t i = 0;
#ifdef METAFAST_VECTOR_KERNELS
        using box_muller::Doubles, box_muller::lanes;
        Words counter = first_counters(state_);
        for (; i + 2 * lanes <= n; i += 2 * lanes, counter += lanes * golden) {
            Doubles first, second;  // values i .. i + 2 lanes - 1: the words' halves in memory order
            halves(mix64(counter), first, second);
            simd::store<double, box_muller::wide>(out + i, low + step * first);
            simd::store<double, box_muller::wide>(out + i + lanes, low + step * second);
        }
#endif
        for (; i < n; ++i) {
            const std::uint64_t bits = mix64(state_ + (i / 2 + 1) * golden);
            out[i] = low + step * double(static_cast<std::uint32_t>(i % 2 ? bits >> 32 : bits));
        }
        state_ += (n + 1) / 2 * golden;
    }

    // n standard normals in one go: Box-Muller on consecutive pairs of uniforms (u1, u2) of the
    // stream, r cos(2 pi u2) then r sin(2 pi u2) with r = sqrt(-2 log(1 - u1)); when n is odd
    // the last sine is dropped. Vectorised (box_muller.hpp): the values agree with normal()'s
    // arithmetic to a few ulp, not bit for bit. Independent of normal()'s spare value.
    void fill_normal(double* out, std::size_t n) {
        const std::size_t pairs = (n + 1) / 2;
#ifdef METAFAST_VECTOR_KERNELS
        using box_muller::Doubles, box_muller::lanes;
        Words counter;  // pair k takes uniforms 2k and 2k + 1 of the stream
        for (std::size_t l = 0; l < lanes; ++l) counter[l] = state_ + (2 * l + 1) * golden;
        for (std::size_t k = 0; k < pairs; k += lanes, counter += 2 * lanes * golden) {
            const Doubles radius = sqrt_of(-2.0 * box_muller::log(1.0 - uniforms(counter)));
            Doubles sine, cosine;
            box_muller::sincos_turns(uniforms(counter + golden), sine, cosine);
            const Doubles x = radius * cosine, y = radius * sine;
            if (2 * (k + lanes) <= n) {  // x0 y0 x1 y1 ...: two whole vectors
                simd::store<double, box_muller::wide>(out + 2 * k, interleaved<0>(x, y, std::make_index_sequence<lanes>()));
                simd::store<double, box_muller::wide>(out + 2 * k + lanes,
                                                      interleaved<lanes>(x, y, std::make_index_sequence<lanes>()));
                continue;
            }
            for (std::size_t l = 0; l < lanes && 2 * (k + l) < n; ++l) {
                out[2 * (k + l)] = x[l];
                if (2 * (k + l) + 1 < n) out[2 * (k + l) + 1] = y[l];
            }
        }
#else
        for (std::size_t k = 0; k < pairs; ++k) {
            const double u1 = unit(state_ + (2 * k + 1) * golden), u2 = unit(state_ + (2 * k + 2) * golden);
            const double radius = std::sqrt(-2.0 * std::log(1.0 - u1));
            out[2 * k] = radius * std::cos(6.283185307179586 * u2);
            if (2 * k + 1 < n) out[2 * k + 1] = radius * std::sin(6.283185307179586 * u2);
        }
#endif
        state_ += 2 * pairs * golden;
    }

    // Uniform integer in [0, n) for n >= 1 (bias below 2^-53 n, irrelevant for task sizes).
    std::uint64_t below(std::uint64_t n) { return scale_below(uniform(), n); }

    // The integer below(n) returns for the uniform u.
    static std::uint64_t scale_below(double u, std::uint64_t n) {
        const auto k = static_cast<std::uint64_t>(u * double(n));
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
    // The uniform in [0, 1) at counter value c (53 random bits).
    static double unit(std::uint64_t c) { return double(mix64(c) >> 11) * 0x1.0p-53; }

#ifdef METAFAST_VECTOR_KERNELS
    using Words = box_muller::Words;
    static Words first_counters(std::uint64_t state) {
        Words c;
        for (std::size_t l = 0; l < box_muller::lanes; ++l) c[l] = state + (l + 1) * golden;
        return c;
    }
    // The 53 random bits at counters c, as doubles (integers below 2^53), and as uniforms.
    static box_muller::Doubles integers(Words c) {
        const Words bits = mix64(c) >> 11;
#ifdef __AVX512DQ__
        return __builtin_convertvector(bits, box_muller::Doubles);  // one vcvtuqq2pd
#else
        // No vector conversion from 64-bit integers below AVX-512: the high 21 and low 32 bits
        // as the mantissas of 2^84 and 2^52, the offsets subtracted, exact at every step.
        using box_muller::Doubles;
        const Doubles high = reinterpret_cast<Doubles>((bits >> 32) | 0x4530000000000000ULL);
        const Doubles low = reinterpret_cast<Doubles>((bits & 0xFFFFFFFFULL) | 0x4330000000000000ULL);
        return (high - (0x1.0p84 + 0x1.0p52)) + low;
#endif
    }
    static box_muller::Doubles uniforms(Words c) { return integers(c) * 0x1.0p-53; }
#ifdef __AVX512F__
    using Words32 = simd::vec<std::uint32_t, box_muller::wide>;
    using Halves = simd::vec<std::uint32_t, box_muller::wide / 2>;
    // Lanes First, First + 1, ... of `all`, in registers.
    template <std::size_t First, std::size_t... I>
    static Halves lanes_from(Words32 all, std::index_sequence<I...>) {
        return __builtin_shufflevector(all, all, (First + I)...);
    }
#endif
    // Values First, First + 1, ... of x0 y0 x1 y1 ..., in registers.
    template <std::size_t First, std::size_t... I>
    static box_muller::Doubles interleaved(box_muller::Doubles x, box_muller::Doubles y, std::index_sequence<I...>) {
        return __builtin_shufflevector(x, y, ((First + I) % 2 * box_muller::lanes + (First + I) / 2)...);
    }
    // The 32-bit halves of `bits` in memory order (word 0's low half, its high half, word 1's
    // low half, ...) as doubles, exactly: the first `lanes` of them and the next `lanes`.
    static void halves(Words bits, box_muller::Doubles& first, box_muller::Doubles& second) {
        using box_muller::lanes;
#ifdef __AVX512F__
        // one vcvtudq2pd per half of the register (the zero-masked form: GCC 12's unmasked one
        // starts from an undefined vector and warns)
        const auto all = reinterpret_cast<Words32>(bits);
        const auto as_doubles = [](Halves k) {
            return reinterpret_cast<box_muller::Doubles>(_mm512_maskz_cvtepu32_pd(0xFF, reinterpret_cast<__m256i>(k)));
        };
        first = as_doubles(lanes_from<0>(all, std::make_index_sequence<lanes>()));
        second = as_doubles(lanes_from<lanes>(all, std::make_index_sequence<lanes>()));
#else
        // Below AVX-512 only signed 32-bit integers convert: each half as the mantissa of 2^52.
        const auto as_doubles = [](Words k) {
            return reinterpret_cast<box_muller::Doubles>(k | 0x4330000000000000ULL) - 0x1.0p52;
        };
#ifdef __AVX2__
        // the halves of each 128-bit lane zero-extended to 64 bits (vpmovzxdq) keep their order
        const auto all = reinterpret_cast<__m256i>(bits);
        first = as_doubles(reinterpret_cast<Words>(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(all))));
        second = as_doubles(reinterpret_cast<Words>(_mm256_cvtepu32_epi64(_mm256_extracti128_si256(all, 1))));
#else
        // the low and high halves apart, then interleaved
        const box_muller::Doubles low = as_doubles(bits & 0xFFFFFFFFULL), high = as_doubles(bits >> 32);
        first = interleaved<0>(low, high, std::make_index_sequence<lanes>());
        second = interleaved<lanes>(low, high, std::make_index_sequence<lanes>());
#endif
#endif
    }
    static box_muller::Doubles sqrt_of(box_muller::Doubles x) {
        for (std::size_t l = 0; l < box_muller::lanes; ++l) x[l] = std::sqrt(x[l]);  // one vsqrtpd
        return x;
    }
#endif

    std::uint64_t state_;
    double spare_ = 0.0;
    bool has_spare_ = false;
};

}  // namespace metafast
