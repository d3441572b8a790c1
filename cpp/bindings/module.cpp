// metafast._core: the compiled core. A table of contents; each concept registers itself.
#include "pybind11.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace metafast::bindings {
void register_mlp(py::module_& m);
void register_tasks(py::module_& m);
void register_meta_sgd(py::module_& m);
void register_reptile(py::module_& m);
void register_rl(py::module_& m);
}  // namespace metafast::bindings

PYBIND11_MODULE(_core, m) {
    m.doc() = "metafast's compiled core (private: use the metafast package)";
    m.attr("__version__") = METAFAST_VERSION;
#ifdef _OPENMP
    m.attr("openmp") = true;
    m.def("max_threads", [] { return omp_get_max_threads(); },
          "Threads OpenMP would use by default.");
#else
    m.attr("openmp") = false;
    m.def("max_threads", [] { return 1; }, "Threads OpenMP would use by default.");
#endif
    metafast::bindings::register_mlp(m);
    metafast::bindings::register_tasks(m);
    metafast::bindings::register_meta_sgd(m);
    metafast::bindings::register_reptile(m);
    metafast::bindings::register_rl(m);
}
