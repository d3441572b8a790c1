// What the running CPU and operating system support, read with CPUID and XGETBV: the facts the
// loader needs to pick a core compiled for an x86-64 level. Compiled for the oldest x86-64 so
// that it runs on any of them.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define METAFAST_HAS_CPUID 1
#endif

namespace metafast {

struct CpuFeatures {
    std::string vendor, brand;
    // x86-64-v2
    bool sse4_2 = false, ssse3 = false, popcnt = false, cx16 = false;
    // x86-64-v3
    bool avx = false, avx2 = false, fma = false, bmi1 = false, bmi2 = false, f16c = false, lzcnt = false,
         movbe = false;
    // x86-64-v4
    bool avx512f = false, avx512bw = false, avx512cd = false, avx512dq = false, avx512vl = false;
    // The operating system saves the YMM (AVX) and ZMM and mask (AVX-512) registers on a switch:
    // without that, the instructions fault even where CPUID lists them.
    bool os_ymm = false, os_zmm = false;

    bool x86_64_v2() const { return sse4_2 && ssse3 && popcnt && cx16; }
    bool x86_64_v3() const {
        return x86_64_v2() && os_ymm && avx && avx2 && fma && bmi1 && bmi2 && f16c && lzcnt && movbe;
    }
    bool x86_64_v4() const {
        return x86_64_v3() && os_zmm && avx512f && avx512bw && avx512cd && avx512dq && avx512vl;
    }
};

inline CpuFeatures detect_cpu_features() {
    CpuFeatures f;
#ifdef METAFAST_HAS_CPUID
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
    const unsigned max_leaf = a;
    char vendor[13] = {};
    std::memcpy(vendor, &b, 4);
    std::memcpy(vendor + 4, &d, 4);
    std::memcpy(vendor + 8, &c, 4);
    f.vendor = vendor;

    __get_cpuid(1, &a, &b, &c, &d);
    auto bit = [](unsigned word, int n) { return ((word >> n) & 1u) != 0; };
    f.ssse3 = bit(c, 9);
    f.fma = bit(c, 12);
    f.cx16 = bit(c, 13);
    f.sse4_2 = bit(c, 20);
    f.movbe = bit(c, 22);
    f.popcnt = bit(c, 23);
    f.avx = bit(c, 28);
    f.f16c = bit(c, 29);
    if (bit(c, 27)) {  // OSXSAVE: XGETBV reads which register states the OS saves
        unsigned lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        f.os_ymm = (lo & 0x6u) == 0x6u;     // SSE and AVX state
        f.os_zmm = (lo & 0xE6u) == 0xE6u;   // and opmask, ZMM0-15 high halves, ZMM16-31
    }
    if (max_leaf >= 7) {
        __get_cpuid_count(7, 0, &a, &b, &c, &d);
        f.bmi1 = bit(b, 3);
        f.avx2 = bit(b, 5);
        f.bmi2 = bit(b, 8);
        f.avx512f = bit(b, 16);
        f.avx512dq = bit(b, 17);
        f.avx512cd = bit(b, 28);
        f.avx512bw = bit(b, 30);
        f.avx512vl = bit(b, 31);
    }
    if (__get_cpuid(0x80000000u, &a, &b, &c, &d)) {
        const unsigned max_extended = a;
        if (max_extended >= 0x80000001u) {
            __get_cpuid(0x80000001u, &a, &b, &c, &d);
            f.lzcnt = bit(c, 5);  // ABM
        }
        if (max_extended >= 0x80000004u) {
            char brand[49] = {};
            for (unsigned leaf = 0; leaf < 3; ++leaf) {
                __get_cpuid(0x80000002u + leaf, &a, &b, &c, &d);
                const unsigned words[4] = {a, b, c, d};
                std::memcpy(brand + 16 * leaf, words, 16);
            }
            f.brand = brand;
            const auto first = f.brand.find_first_not_of(' ');
            f.brand = first == std::string::npos ? std::string() : f.brand.substr(first);
            while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
        }
    }
#endif
    return f;
}

}  // namespace metafast
