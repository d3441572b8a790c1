// What the running CPU and operating system support, read with CPUID and XGETBV: the facts the
// loader needs to pick a core compiled for an x86-64 level (which features each level needs is
// the loader's business). Compiled for the oldest x86-64 so that it runs on any of them.
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define METAFAST_HAS_CPUID 1
#endif

namespace metafast {

struct CpuFeatures {
    std::string vendor, brand;
    std::vector<std::pair<const char*, bool>> flags;  // every name of feature_bits, in order
};

#ifdef METAFAST_HAS_CPUID
// Where CPUID reports each feature the x86-64 levels need: leaf (subleaf 0), register, bit.
enum class Register { ebx, ecx };
struct FeatureBit {
    const char* name;
    unsigned leaf;
    Register reg;
    int bit;
};
constexpr FeatureBit feature_bits[] = {
    {"ssse3", 1, Register::ecx, 9},      {"fma", 1, Register::ecx, 12},      {"cx16", 1, Register::ecx, 13},
    {"sse4_2", 1, Register::ecx, 20},    {"movbe", 1, Register::ecx, 22},    {"popcnt", 1, Register::ecx, 23},
    {"avx", 1, Register::ecx, 28},       {"f16c", 1, Register::ecx, 29},     {"bmi1", 7, Register::ebx, 3},
    {"avx2", 7, Register::ebx, 5},       {"bmi2", 7, Register::ebx, 8},      {"avx512f", 7, Register::ebx, 16},
    {"avx512dq", 7, Register::ebx, 17},  {"avx512cd", 7, Register::ebx, 28}, {"avx512bw", 7, Register::ebx, 30},
    {"avx512vl", 7, Register::ebx, 31},  {"lzcnt", 0x80000001u, Register::ecx, 5},  // ABM
};

// The ebx and ecx of `leaf`, or zeros where the CPU does not have the leaf.
inline std::pair<unsigned, unsigned> cpuid_words(unsigned leaf) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_max(leaf & 0x80000000u, nullptr) < leaf) return {0, 0};
    __cpuid_count(leaf, 0, a, b, c, d);
    return {b, c};
}
#endif

inline CpuFeatures detect_cpu_features() {
    CpuFeatures f;
#ifdef METAFAST_HAS_CPUID
    unsigned a = 0, b = 0, c = 0, d = 0;
    __cpuid(0, a, b, c, d);
    char vendor[13] = {};
    std::memcpy(vendor, &b, 4);
    std::memcpy(vendor + 4, &d, 4);
    std::memcpy(vendor + 8, &c, 4);
    f.vendor = vendor;

    for (const FeatureBit& feature : feature_bits) {
        const auto [ebx, ecx] = cpuid_words(feature.leaf);
        const unsigned word = feature.reg == Register::ebx ? ebx : ecx;
        f.flags.emplace_back(feature.name, ((word >> feature.bit) & 1u) != 0);
    }
    // The OS saves the YMM (AVX) and the ZMM and mask (AVX-512) registers on a context switch:
    // without that, the instructions fault even where CPUID lists them.
    bool os_ymm = false, os_zmm = false;
    if ((cpuid_words(1).second >> 27) & 1u) {  // OSXSAVE: XGETBV says which states the OS saves
        unsigned lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        os_ymm = (lo & 0x6u) == 0x6u;    // SSE and AVX state
        os_zmm = (lo & 0xE6u) == 0xE6u;  // and opmask, ZMM0-15 high halves, ZMM16-31
    }
    f.flags.emplace_back("os_ymm", os_ymm);
    f.flags.emplace_back("os_zmm", os_zmm);

    if (__get_cpuid_max(0x80000000u, nullptr) >= 0x80000004u) {
        char brand[49] = {};
        for (unsigned leaf = 0; leaf < 3; ++leaf) {
            __cpuid(0x80000002u + leaf, a, b, c, d);
            const unsigned words[4] = {a, b, c, d};
            std::memcpy(brand + 16 * leaf, words, 16);
        }
        f.brand = brand;
        const auto first = f.brand.find_first_not_of(' ');
        f.brand = first == std::string::npos ? std::string() : f.brand.substr(first);
        while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
    }
#endif
    return f;
}

}  // namespace metafast
