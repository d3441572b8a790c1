// metafast._cpu: the CPU probe the loader reads before it imports a core (private).
#include "metafast/cpu_features.hpp"
#include "pybind11.hpp"

PYBIND11_MODULE(_cpu, m) {
    m.doc() = "What the running CPU supports, for picking metafast's core (private)";
    m.def(
        "features",
        [] {
            const metafast::CpuFeatures f = metafast::detect_cpu_features();
            py::dict out;
#ifdef METAFAST_HAS_CPUID
            out["x86"] = true;
#else
            out["x86"] = false;
#endif
            out["vendor"] = f.vendor;
            out["brand"] = f.brand;
            for (const auto& [name, value] :
                 {std::pair{"sse4_2", f.sse4_2}, {"ssse3", f.ssse3}, {"popcnt", f.popcnt}, {"cx16", f.cx16},
                  {"avx", f.avx}, {"avx2", f.avx2}, {"fma", f.fma}, {"bmi1", f.bmi1}, {"bmi2", f.bmi2},
                  {"f16c", f.f16c}, {"lzcnt", f.lzcnt}, {"movbe", f.movbe}, {"avx512f", f.avx512f},
                  {"avx512bw", f.avx512bw}, {"avx512cd", f.avx512cd}, {"avx512dq", f.avx512dq},
                  {"avx512vl", f.avx512vl}, {"os_ymm", f.os_ymm}, {"os_zmm", f.os_zmm}})
                out[name] = value;
            out["x86_64_v2"] = f.x86_64_v2();
            out["x86_64_v3"] = f.x86_64_v3();
            out["x86_64_v4"] = f.x86_64_v4();
            return out;
        },
        "CPU vendor, brand string and the instruction-set features the x86-64 levels need.");
}
