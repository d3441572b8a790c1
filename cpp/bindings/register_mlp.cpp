// Binds metafast::Mlp: forward pass, loss, gradient and Hessian-vector product, for float32
// and float64 parameter vectors (the dtype of theta picks the precision).
#include "arrays.hpp"

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "metafast/backprop.hpp"
#include "metafast/denormals.hpp"
#include "metafast/hvp.hpp"
#include "metafast/losses.hpp"
#include "metafast/mlp.hpp"

namespace metafast::bindings {
namespace {

// The arrays of one call, checked and with the GIL-free pointers the core needs.
template <class T>
struct Batch {
    const T* theta = nullptr;
    const T* x = nullptr;
    std::size_t rows = 0;
    Targets<T> targets;
};

template <class T>
Batch<T> check_inputs(const Mlp& mlp, const py::array& theta, const py::array& x) {
    Batch<T> batch;
    std::vector<Dim> theta_dims{{static_cast<py::ssize_t>(mlp.num_params()), "num_params"}};
    batch.theta = checked_data<T>(theta, "theta", theta_dims);
    check_finite("theta", batch.theta, mlp.num_params());
    std::vector<Dim> x_dims{{-1, "rows"}, {static_cast<py::ssize_t>(mlp.input_width()), ""}};
    batch.x = checked_data<T>(x, "x", x_dims);
    batch.rows = static_cast<std::size_t>(x_dims[0].size);
    check_finite("x", batch.x, batch.rows * mlp.input_width());
    return batch;
}

template <class T>
Batch<T> check_inputs(const Mlp& mlp, const py::array& theta, const py::array& x,
                      const py::array& y, Loss loss) {
    check_loss_matches_output(loss, mlp.output_activation(), mlp.output_width());
    Batch<T> batch = check_inputs<T>(mlp, theta, x);
    batch.targets = checked_targets<T>(mlp, loss, y, "y", {{static_cast<py::ssize_t>(batch.rows), "rows"}});
    return batch;
}

template <class T>
py::array_t<T> forward_impl(const Mlp& mlp, const py::array& theta, const py::array& x) {
    const Batch<T> b = check_inputs<T>(mlp, theta, x);
    py::array_t<T> out({static_cast<py::ssize_t>(b.rows), static_cast<py::ssize_t>(mlp.output_width())});
    T* dst = out.mutable_data();
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
        MlpWorkspace<T> ws;
        ws.reserve(mlp, b.rows, false);
        const T* result = forward(mlp, b.theta, b.x, b.rows, ws);
        std::copy(result, result + b.rows * mlp.output_width(), dst);
    }
    return out;
}

template <class T>
double loss_impl(const Mlp& mlp, const py::array& theta, const py::array& x, const py::array& y,
                 Loss loss) {
    const Batch<T> b = check_inputs<T>(mlp, theta, x, y, loss);
    py::gil_scoped_release release;  // only raw pointers from here on
    [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
    MlpWorkspace<T> ws;
    return double(loss_value(mlp, b.theta, b.x, b.rows, b.targets, loss, ws));
}

template <class T>
std::tuple<double, py::array_t<T>> loss_and_grad_impl(const Mlp& mlp, const py::array& theta,
                                                      const py::array& x, const py::array& y,
                                                      Loss loss) {
    const Batch<T> b = check_inputs<T>(mlp, theta, x, y, loss);
    py::array_t<T> grad(static_cast<py::ssize_t>(mlp.num_params()));
    T* g = grad.mutable_data();
    T value;
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
        MlpWorkspace<T> ws;
        value = loss_and_grad(mlp, b.theta, b.x, b.rows, b.targets, loss, ws, g);
    }
    return {double(value), grad};
}

template <class T>
py::array_t<T> hvp_impl(const Mlp& mlp, const py::array& theta, const py::array& x,
                        const py::array& y, const py::array& v, Loss loss) {
    const Batch<T> b = check_inputs<T>(mlp, theta, x, y, loss);
    std::vector<Dim> v_dims{{static_cast<py::ssize_t>(mlp.num_params()), "num_params"}};
    const T* direction = checked_data<T>(v, "v", v_dims);
    check_finite("v", direction, mlp.num_params());
    py::array_t<T> hv(static_cast<py::ssize_t>(mlp.num_params()));
    T* out = hv.mutable_data();
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
        MlpWorkspace<T> ws;
        hvp(mlp, b.theta, b.x, b.rows, b.targets, loss, direction, ws, out, static_cast<T*>(nullptr));
    }
    return hv;
}

}  // namespace

void register_mlp(py::module_& m) {
    py::class_<Mlp>(m, "MLP", "Architecture and flat parameter layout of a multilayer perceptron.")
        .def_readonly_static("max_width", &Mlp::max_width_allowed, "The widest layer the core accepts.")
        .def_readonly_static("max_params", &Mlp::max_params_allowed, "The most parameters the core accepts.")
        .def(py::init([](std::vector<std::size_t> sizes, const std::string& activation,
                         const std::string& output, bool bias) {
                 return Mlp(std::move(sizes), parse_activation(activation, "activation"),
                            parse_activation(output, "output"), bias);
             }),
             "sizes"_a, "activation"_a = "relu", "output"_a = "identity", "bias"_a = true)
        .def_property_readonly("sizes", &Mlp::sizes)
        .def_property_readonly("num_params", &Mlp::num_params)
        .def_property_readonly("bias", &Mlp::bias)
        .def_property_readonly("activation", [](const Mlp& mlp) { return activation_name(mlp.hidden_activation()); })
        .def_property_readonly("output", [](const Mlp& mlp) { return activation_name(mlp.output_activation()); })
        .def("workspace_bytes",
             [](const Mlp& mlp, std::size_t rows, std::size_t itemsize, bool r_operator) {
                 require(itemsize == 4 || itemsize == 8, "itemsize must be 4 (float32) or 8 (float64), got " +
                                                             std::to_string(itemsize));
                 return itemsize == 4 ? MlpWorkspace<float>::bytes(mlp, rows, r_operator)
                                      : MlpWorkspace<double>::bytes(mlp, rows, r_operator);
             },
             "rows"_a, "itemsize"_a, "r_operator"_a = true,
             "Bytes a pass over `rows` rows allocates for its workspace (with the R-operator's buffers: "
             "Hessian-vector products).")
        .def("weight_offset", &Mlp::weight_offset, "layer"_a)
        .def("bias_offset", &Mlp::bias_offset, "layer"_a)
        .def("forward",
             [](const Mlp& mlp, const py::array& theta, const py::array& x) -> py::array {
                 return dispatch_dtype(theta, "theta", [&](auto t) { return py::array(forward_impl<decltype(t)>(mlp, theta, x)); });
             },
             "theta"_a, "x"_a)
        .def("loss",
             [](const Mlp& mlp, const py::array& theta, const py::array& x, const py::array& y,
                const std::string& loss) {
                 const Loss kind = parse_loss(loss);
                 return dispatch_dtype(theta, "theta", [&](auto t) { return loss_impl<decltype(t)>(mlp, theta, x, y, kind); });
             },
             "theta"_a, "x"_a, "y"_a, "loss"_a = "mse")
        .def("loss_and_grad",
             [](const Mlp& mlp, const py::array& theta, const py::array& x, const py::array& y,
                const std::string& loss) -> std::tuple<double, py::array> {
                 const Loss kind = parse_loss(loss);
                 return dispatch_dtype(theta, "theta", [&](auto t) -> std::tuple<double, py::array> {
                     return loss_and_grad_impl<decltype(t)>(mlp, theta, x, y, kind);
                 });
             },
             "theta"_a, "x"_a, "y"_a, "loss"_a = "mse")
        .def("hvp",
             [](const Mlp& mlp, const py::array& theta, const py::array& x, const py::array& y,
                const py::array& v, const std::string& loss) -> py::array {
                 const Loss kind = parse_loss(loss);
                 return dispatch_dtype(theta, "theta", [&](auto t) { return py::array(hvp_impl<decltype(t)>(mlp, theta, x, y, v, kind)); });
             },
             "theta"_a, "x"_a, "y"_a, "v"_a, "loss"_a = "mse");
}

}  // namespace metafast::bindings
