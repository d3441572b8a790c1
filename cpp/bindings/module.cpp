// metafast._core_<level>: the compiled core, built once per CPU level (METAFAST_MODULE names
// it; metafast/_dispatch.py imports one as metafast._core). A table of contents; each concept
// registers itself.
#include <string>

#include "pybind11.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace metafast::bindings {
void register_mlp(py::module_& m);
void register_convnet(py::module_& m);
void register_tasks(py::module_& m);
void register_data_tasks(py::module_& m);
void register_meta_sgd(py::module_& m);
void register_reptile(py::module_& m);
void register_rl(py::module_& m);
void register_probe(py::module_& m);
void register_task_tree(py::module_& m);
}  // namespace metafast::bindings

#ifndef METAFAST_MODULE
#define METAFAST_MODULE _core_baseline
#define METAFAST_LEVEL "baseline"
#define METAFAST_FLAGS ""
#endif

// The compiler that built this core, for metafast.build_info().
static std::string compiler_description() {
#if defined(__clang__)
    return std::string("Clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("GCC ") + __VERSION__;
#elif defined(_MSC_VER)
    return "MSVC " + std::to_string(_MSC_VER);
#else
    return "unknown";
#endif
}

PYBIND11_MODULE(METAFAST_MODULE, m) {
    m.doc() = "metafast's compiled core (private: use the metafast package)";
    m.attr("__version__") = METAFAST_VERSION;
    m.attr("level") = METAFAST_LEVEL;
    m.attr("compile_flags") = METAFAST_FLAGS;
    m.attr("compiler") = compiler_description();
#ifdef _OPENMP
    m.attr("openmp") = true;
    m.def("max_threads", [] { return omp_get_max_threads(); },
          "Threads OpenMP would use by default.");
#else
    m.attr("openmp") = false;
    m.def("max_threads", [] { return 1; }, "Threads OpenMP would use by default.");
#endif
    metafast::bindings::register_mlp(m);
    metafast::bindings::register_convnet(m);
    metafast::bindings::register_tasks(m);
    metafast::bindings::register_data_tasks(m);
    metafast::bindings::register_meta_sgd(m);
    metafast::bindings::register_reptile(m);
    metafast::bindings::register_rl(m);
    metafast::bindings::register_probe(m);
    metafast::bindings::register_task_tree(m);
}
