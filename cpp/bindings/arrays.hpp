// Checks of arrays at the boundary. Every check throws std::invalid_argument (ValueError) or
// pybind11::type_error (TypeError), naming the argument and what was expected, before any
// pointer is handed to the core.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "pybind11.hpp"
#include "metafast/losses.hpp"
#include "metafast/mlp.hpp"

namespace metafast::bindings {

inline void require(bool condition, const std::string& message) {
    if (!condition) throw std::invalid_argument(message);
}

inline std::string shape_text(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) s += ", ";
        s += std::to_string(a.shape(i));
    }
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// A dimension the caller expects: a fixed size, or any size (-1) shown by name; 0 only where
// it may be empty (a distributed run's share of a meta-batch may hold no task).
struct Dim {
    py::ssize_t size;
    const char* name;
    bool may_be_empty = false;
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
        if (dims[i].size == 0 && !dims[i].may_be_empty)
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

inline std::size_t element_count(const std::vector<Dim>& dims) {
    std::size_t n = 1;
    for (const Dim& d : dims) n *= static_cast<std::size_t>(d.size);
    return n;
}

// Checks targets for `loss`: int64 class labels of shape `dims` in [0, classes) for softmax_ce,
// otherwise floats of shape dims + (output_width,), finite, and in [0, 1] for bce.
template <class T, class Net>
Targets<T> checked_targets(const Net& net, Loss loss, const py::array& y, const char* name,
                           std::vector<Dim> dims) {
    Targets<T> targets;
    if (uses_labels(loss)) {
        targets.labels = checked_data<std::int64_t>(y, name, dims);
        const auto classes = static_cast<std::int64_t>(net.output_width());
        const std::size_t n = element_count(dims);
        for (std::size_t i = 0; i < n; ++i)
            if (targets.labels[i] < 0 || targets.labels[i] >= classes)
                throw std::invalid_argument(std::string(name) + " must hold class labels in [0, " +
                                            std::to_string(classes) + ") for softmax_ce, got " +
                                            std::to_string(targets.labels[i]) + " at flat index " +
                                            std::to_string(i));
        return targets;
    }
    dims.push_back({static_cast<py::ssize_t>(net.output_width()), ""});
    targets.values = checked_data<T>(y, name, dims);
    const std::size_t n = element_count(dims);
    check_finite(name, targets.values, n);
    if (loss == Loss::bce)
        for (std::size_t i = 0; i < n; ++i)
            if (targets.values[i] < T(0) || targets.values[i] > T(1))
                throw std::invalid_argument(std::string(name) + " must hold probabilities in [0, 1] for bce, got " +
                                            std::to_string(targets.values[i]) + " at flat index " +
                                            std::to_string(i));
    return targets;
}

// Calls f(T{}) with T the floating type of `array` (float or double).
template <class F>
auto dispatch_dtype(const py::array& array, const char* name, F&& f) {
    if (py::isinstance<py::array_t<double>>(array)) return f(double{});
    if (py::isinstance<py::array_t<float>>(array)) return f(float{});
    throw py::type_error(std::string(name) + " must be a float32 or float64 array, got " +
                         py::str(array.dtype()).cast<std::string>());
}

}  // namespace metafast::bindings
