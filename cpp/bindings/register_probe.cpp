// Bindings of the probes of the CPU as this core runs it (for the benchmarks), and of the load
// the thread teams follow.
#include <stdexcept>

#include "metafast/peak_probe.hpp"
#include "metafast/thread_budget.hpp"
#include "pybind11.hpp"

namespace metafast::bindings {

void register_probe(py::module_& m) {
    auto check = [](double seconds) {
        if (!(seconds > 0 && seconds <= 60)) throw std::invalid_argument("seconds must be in (0, 60]");
    };
    m.def(
        "fma_peak_gflops",
        [check](double seconds) {
            check(seconds);
            py::gil_scoped_release release;  // no Python object is touched while it runs
            return probe::fma_peak_gflops(seconds);
        },
        "seconds"_a = 0.2,
        "fp32 GFLOP/s of one thread doing multiply-adds on full vectors of this core's level (best run).");
    m.def(
        "clock_ghz",
        [check](double seconds) {
            check(seconds);
            py::gil_scoped_release release;
            return probe::clock_ghz(seconds);
        },
        "seconds"_a = 0.2, "The core's clock in GHz, from a chain of dependent integer additions (0 off x86-64).");
    m.def(
        "free_cores", [] { return MachineLoad::instance().free_cores(); },
        "Cores of this process's CPUs that other processes left free over the last tenth of a second "
        "(every call's thread team is at most this, rounded, and at least 1).");
}

}  // namespace metafast::bindings
