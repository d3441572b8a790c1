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
            for (const auto& [name, value] : f.flags) out[name] = value;
            return out;
        },
        "x86: whether CPUID was read; vendor and brand strings; and, on x86, one bool per "
        "instruction-set feature the x86-64 levels need (os_ymm, os_zmm: the OS saves those registers).");
}
