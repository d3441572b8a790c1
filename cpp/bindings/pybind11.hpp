// The one include hub of the bindings, with the helpers that check arrays at the boundary.
// Every check throws std::invalid_argument (ValueError) or pybind11::type_error (TypeError),
// naming the argument and what was expected, before any pointer is handed to the core.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;
using namespace pybind11::literals;

namespace metafast::bindings {

inline std::string shape_text(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) s += ", ";
        s += std::to_string(a.shape(i));
    }
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// A dimension the caller expects: a fixed size, or any size (-1) shown by name.
struct Dim {
    py::ssize_t size;
    const char* name;
};

inline std::string expected_text(const std::vector<Dim>& dims) {
    std::string s = "(";
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (i) s += ", ";
        s += dims[i].size < 0 ? std::string(dims[i].name) : std::to_string(dims[i].size);
    }
    return s + (dims.size() == 1 ? ",)" : ")");
}

// Checks dtype T, C order and shape of `a`, and returns its data. Wildcard dimensions
// (size -1) are filled in `dims` from the array so the caller can read them back.
template <class T>
const T* checked_data(const py::array& a, const char* name, std::vector<Dim>& dims) {
    const std::string wanted = py::str(py::dtype::of<T>()).cast<std::string>();
    if (!py::isinstance<py::array_t<T>>(a))
        throw py::type_error(std::string(name) + " must be a " + wanted + " array, got " +
                             py::str(a.dtype()).cast<std::string>());
    if (!(a.flags() & py::array::c_style))
        throw py::type_error(std::string(name) + " must be C-contiguous (metafast.MLP copies "
                             "other layouts; the raw core does not)");
    bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
    for (std::size_t i = 0; ok && i < dims.size(); ++i) {
        if (dims[i].size < 0) continue;
        ok = a.shape(static_cast<py::ssize_t>(i)) == dims[i].size;
    }
    if (!ok)
        throw std::invalid_argument(std::string(name) + " must have shape " + expected_text(dims) +
                                    ", got " + shape_text(a));
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (dims[i].size < 0) dims[i].size = a.shape(static_cast<py::ssize_t>(i));
        if (dims[i].size == 0)
            throw std::invalid_argument(std::string(name) + " must not be empty, got shape " +
                                        shape_text(a));
    }
    return static_cast<const T*>(a.data());
}

template <class T>
void check_finite(const char* name, const T* data, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(data[i]))
            throw std::invalid_argument(std::string(name) + " contains NaN or infinity (at flat index " +
                                        std::to_string(i) + ")");
}

}  // namespace metafast::bindings
