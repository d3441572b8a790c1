// Binds metafast::ConvNet: forward pass, loss, gradient and Hessian-vector product, for float32
// and float64 parameter vectors (the dtype of theta picks the precision).
#include "arrays.hpp"
#include "checks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "metafast/convnet.hpp"
#include "metafast/denormals.hpp"
#include "metafast/losses.hpp"

namespace metafast::bindings {
namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// `a` as a C-ordered array of T: the dtype must be T already (TypeError otherwise); another
// memory order is copied once.
template <class T>
CArray<T> as_c_array(const py::array& a, const char* name) {
    if (!py::isinstance<py::array_t<T>>(a))
        throw py::type_error(std::string(name) + " must be a " + py::str(py::dtype::of<T>()).cast<std::string>() +
                             " array (the dtype of theta), got " + py::str(a.dtype()).cast<std::string>());
    return CArray<T>::ensure(a);
}

template <class T>
CArray<T> checked_vector(const ConvNet& net, const py::array& a, const char* name) {
    CArray<T> c = as_c_array<T>(a, name);
    require(c.ndim() == 1 && static_cast<std::size_t>(c.shape(0)) == net.num_params(),
            std::string(name) + " must have shape (" + std::to_string(net.num_params()) + ",), got " + shape_text(c));
    check_finite(name, c.data(), net.num_params());
    return c;
}

std::string input_text(const ConvNet& net) {
    const ConvBlock& b = net.blocks()[0];
    return "(" + std::to_string(b.in_c) + ", " + std::to_string(b.in_h) + ", " + std::to_string(b.in_w) + ")";
}

// x as (rows, C, H, W) or (rows, C H W), C order.
template <class T>
CArray<T> checked_images(const ConvNet& net, const py::array& x) {
    CArray<T> c = as_c_array<T>(x, "x");
    const ConvBlock& b = net.blocks()[0];
    const auto C = static_cast<py::ssize_t>(b.in_c), H = static_cast<py::ssize_t>(b.in_h),
               W = static_cast<py::ssize_t>(b.in_w);
    const std::string dims = std::to_string(b.in_c) + ", " + std::to_string(b.in_h) + ", " + std::to_string(b.in_w);
    const std::string flat = std::to_string(net.input_values());
    if (c.ndim() == 4) {
        require(c.shape(1) == C && c.shape(2) == H && c.shape(3) == W,
                "x must have shape (rows, " + dims + ") for input_shape (C, H, W) = " + input_text(net) + ", got " +
                    shape_text(c));
    } else if (c.ndim() == 2) {
        require(static_cast<std::size_t>(c.shape(1)) == net.input_values(),
                "x as flat rows must have shape (rows, " + flat + "): input_shape (C, H, W) = " + input_text(net) +
                    " in C order, got " + shape_text(c));
    } else {
        throw std::invalid_argument("x must have shape (rows, " + dims + ") or (rows, " + flat + "), got " +
                                    shape_text(c));
    }
    require(c.shape(0) >= 1, "x must have at least one row (batch norm needs the batch's statistics)");
    check_finite("x", c.data(), static_cast<std::size_t>(c.shape(0)) * net.input_values());
    return c;
}

template <class T>
py::array_t<T> forward_impl(const ConvNet& net, const py::array& theta, const py::array& x,
                            std::size_t statistics_rows) {
    const CArray<T> t = checked_vector<T>(net, theta, "theta");
    const CArray<T> images = checked_images<T>(net, x);
    const auto rows = static_cast<std::size_t>(images.shape(0));
    require(statistics_rows <= rows, "statistics_rows must be at most the rows of x (" + std::to_string(rows) +
                                         "), got " + std::to_string(statistics_rows));
    py::array_t<T> out({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(net.outputs())});
    T* dst = out.mutable_data();
    const T* tp = t.data();
    const T* xp = images.data();
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
        ConvNetWorkspace<T> ws;
        ws.reserve(net, rows, false);
        const T* result = forward(net, tp, xp, rows, ws, statistics_rows);
        std::copy(result, result + rows * net.outputs(), dst);
    }
    return out;
}

// What loss, loss_and_grad and hvp share: the checked arrays (kept alive by the caller).
template <class T>
struct Call {
    CArray<T> theta, x;
    std::size_t rows = 0;
    Targets<T> targets;
};

template <class T>
Call<T> check_call(const ConvNet& net, const py::array& theta, const py::array& x, const py::array& y, Loss loss) {
    check_loss_matches_output(loss, Activation::identity, net.outputs());
    Call<T> call{checked_vector<T>(net, theta, "theta"), checked_images<T>(net, x), 0, {}};
    call.rows = static_cast<std::size_t>(call.x.shape(0));
    call.targets = checked_targets<T>(net, loss, y, "y", {{static_cast<py::ssize_t>(call.rows), "rows"}});
    return call;
}

template <class T>
double loss_impl(const ConvNet& net, const py::array& theta, const py::array& x, const py::array& y, Loss loss) {
    const Call<T> c = check_call<T>(net, theta, x, y, loss);
    const T* tp = c.theta.data();
    const T* xp = c.x.data();
    py::gil_scoped_release release;  // only raw pointers from here on
    [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
    ConvNetWorkspace<T> ws;
    return double(loss_value(net, tp, xp, c.rows, c.targets, loss, ws));
}

template <class T>
std::tuple<double, py::array_t<T>> loss_and_grad_impl(const ConvNet& net, const py::array& theta,
                                                      const py::array& x, const py::array& y, Loss loss) {
    const Call<T> c = check_call<T>(net, theta, x, y, loss);
    py::array_t<T> grad(static_cast<py::ssize_t>(net.num_params()));
    T* g = grad.mutable_data();
    const T* tp = c.theta.data();
    const T* xp = c.x.data();
    T value;
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
        ConvNetWorkspace<T> ws;
        value = loss_and_grad(net, tp, xp, c.rows, c.targets, loss, ws, g);
    }
    return {double(value), grad};
}

template <class T>
py::array_t<T> hvp_impl(const ConvNet& net, const py::array& theta, const py::array& x, const py::array& y,
                        const py::array& v, Loss loss) {
    const Call<T> c = check_call<T>(net, theta, x, y, loss);
    const CArray<T> direction = checked_vector<T>(net, v, "v");
    py::array_t<T> hv(static_cast<py::ssize_t>(net.num_params()));
    T* out = hv.mutable_data();
    const T* tp = c.theta.data();
    const T* xp = c.x.data();
    const T* vp = direction.data();
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
        ConvNetWorkspace<T> ws;
        hvp(net, tp, xp, c.rows, c.targets, loss, vp, ws, out, static_cast<T*>(nullptr));
    }
    return hv;
}

template <class Choice>
Choice checked_choice(const std::string& value, const char* name, const char* choices,
                      std::initializer_list<std::pair<const char*, Choice>> options) {
    for (const auto& [text, choice] : options)
        if (value == text) return choice;
    throw std::invalid_argument(std::string(name) + " must be one of " + choices + ", got '" + value + "'");
}

ConvNet make_model(const std::vector<std::int64_t>& input_shape, const std::vector<std::int64_t>& channels,
                        std::int64_t outputs, std::int64_t kernel_size, std::int64_t stride,
                        const std::string& padding, const std::optional<std::string>& pool, bool batch_norm,
                        bool batch_norm_scale, double batch_norm_eps, const std::string& activation,
                        const std::string& head, bool bias) {
    const auto text = [](const std::vector<std::int64_t>& values) {
        std::string s = "(";
        for (std::size_t i = 0; i < values.size(); ++i) s += (i ? ", " : "") + std::to_string(values[i]);
        return s + (values.size() == 1 ? ",)" : ")");
    };
    if (input_shape.size() != 3 || *std::min_element(input_shape.begin(), input_shape.end()) < 1)
        throw std::invalid_argument("input_shape must be three positive sizes (C, H, W), got " + text(input_shape));
    if (channels.empty()) throw std::invalid_argument("channels must name at least one block, got ()");
    const auto size = [](std::int64_t value, const std::string& name) {
        require(value >= 1 && static_cast<std::uint64_t>(value) <= ConvNet::max_size_allowed,
                name + " must lie in [1, " + std::to_string(ConvNet::max_size_allowed) + "], got " +
                    std::to_string(value));
        return static_cast<std::size_t>(value);
    };
    std::vector<std::size_t> widths;
    for (std::size_t i = 0; i < channels.size(); ++i)
        widths.push_back(size(channels[i], "channels[" + std::to_string(i) + "]"));
    const Padding pad = checked_choice<Padding>(padding, "padding", "('same', 'valid')",
                                                {{"same", Padding::same}, {"valid", Padding::valid}});
    require(!pool || *pool == "max", "pool must be one of (None, 'max'), got '" + pool.value_or("") + "'");
    const Head h = checked_choice<Head>(head, "head", "('average', 'flatten')",
                                        {{"average", Head::average}, {"flatten", Head::flatten}});
    const Activation act = checked_choice<Activation>(
        activation, "activation", "('relu', 'tanh', 'sigmoid', 'identity')",
        {{"relu", Activation::relu}, {"tanh", Activation::tanh}, {"sigmoid", Activation::sigmoid},
         {"identity", Activation::identity}});
    require(std::isfinite(batch_norm_eps) && batch_norm_eps > 0,
            "batch_norm_eps must be finite and > 0, got " + number_text(batch_norm_eps));
    return ConvNet(size(input_shape[0], "input_shape[0]"), size(input_shape[1], "input_shape[1]"),
                size(input_shape[2], "input_shape[2]"), std::move(widths), size(outputs, "outputs"),
                size(kernel_size, "kernel_size"), size(stride, "stride"), pad, pool.has_value(), batch_norm,
                   batch_norm_scale, batch_norm_eps, act, h, bias);
}

}  // namespace

void register_convnet(py::module_& m) {
    py::class_<ConvNet>(m, "ConvNet",
                             "Architecture and flat parameter layout of a convolutional network (docs/math.md, "
                             "section 5; the layout of metafast.reference.ConvNet).")
        .def(py::init(&make_model), "input_shape"_a, "channels"_a = std::vector<std::int64_t>{64, 64, 64, 64},
             "outputs"_a = 5, "kernel_size"_a = 3, "stride"_a = 2, "padding"_a = "same", "pool"_a = py::none(),
             "batch_norm"_a = true, "batch_norm_scale"_a = false, "batch_norm_eps"_a = 1e-5,
             "activation"_a = "relu", "head"_a = "average", "bias"_a = true)
        .def_property_readonly("num_params", [](const ConvNet& c) { return c.num_params(); })
        .def_property_readonly("features", [](const ConvNet& c) { return c.features(); })
        .def("forward",
             [](const ConvNet& c, const py::array& theta, const py::array& x, std::size_t statistics_rows) -> py::array {
                 return dispatch_dtype(theta, "theta", [&](auto t) {
                     return py::array(forward_impl<decltype(t)>(c, theta, x, statistics_rows));
                 });
             },
             "theta"_a, "x"_a, "statistics_rows"_a = 0,
             "The logits; batch norm's statistics from the first statistics_rows rows (0: all).")
        .def("workspace_bytes",
             [](const ConvNet& c, std::size_t rows, std::size_t itemsize, bool r_operator) {
                 require(itemsize == 4 || itemsize == 8, "itemsize must be 4 (float32) or 8 (float64), got " +
                                                             std::to_string(itemsize));
                 return itemsize == 4 ? ConvNetWorkspace<float>::bytes(c, rows, r_operator)
                                      : ConvNetWorkspace<double>::bytes(c, rows, r_operator);
             },
             "rows"_a, "itemsize"_a, "r_operator"_a = true,
             "Bytes a pass over `rows` rows allocates for its workspace (with the R-operator's buffers: "
             "r_operator).")
        .def_property_readonly(
            "layout",
            [](const ConvNet& c) {
                // (layer, name, offset, shape) for every array of theta, in theta's order.
                py::list out;
                const std::size_t k = c.kernel_size();
                for (std::size_t l = 0; l < c.num_blocks(); ++l) {
                    const ConvBlock& b = c.blocks()[l];
                    out.append(py::make_tuple(l, "weight", b.weight, py::make_tuple(b.out_c, b.in_c, k, k)));
                    const std::pair<const char*, std::size_t> vectors[] = {{"bias", b.bias}, {"shift", b.shift},
                                                                           {"scale", b.scale}};
                    for (const auto& [name, offset] : vectors)
                        if (offset != ConvNet::npos) out.append(py::make_tuple(l, name, offset, py::make_tuple(b.out_c)));
                }
                const std::size_t dense = c.num_blocks();
                out.append(py::make_tuple(dense, "weight", c.dense_weight(), py::make_tuple(c.features(), c.outputs())));
                if (c.dense_bias() != ConvNet::npos)
                    out.append(py::make_tuple(dense, "bias", c.dense_bias(), py::make_tuple(c.outputs())));
                return out;
            },
            "(layer, name, offset, shape) of every array in theta, in theta's order (the blocks, then the "
            "output layer).")
        .def_property_readonly("block_shapes", [](const ConvNet& c) {
            py::list out;
            for (const ConvBlock& b : c.blocks()) out.append(py::make_tuple(b.out_c, b.out_h, b.out_w));
            return out;
        }, "Each block's output shape (C, H, W).")
        .def("loss",
             [](const ConvNet& c, const py::array& theta, const py::array& x, const py::array& y,
                const std::string& loss) {
                 const Loss kind = parse_loss(loss);
                 return dispatch_dtype(theta, "theta",
                                       [&](auto t) { return loss_impl<decltype(t)>(c, theta, x, y, kind); });
             },
             "theta"_a, "x"_a, "y"_a, "loss"_a = "mse")
        .def("loss_and_grad",
             [](const ConvNet& c, const py::array& theta, const py::array& x, const py::array& y,
                const std::string& loss) -> std::tuple<double, py::array> {
                 const Loss kind = parse_loss(loss);
                 return dispatch_dtype(theta, "theta", [&](auto t) -> std::tuple<double, py::array> {
                     return loss_and_grad_impl<decltype(t)>(c, theta, x, y, kind);
                 });
             },
             "theta"_a, "x"_a, "y"_a, "loss"_a = "mse")
        .def("hvp",
             [](const ConvNet& c, const py::array& theta, const py::array& x, const py::array& y,
                const py::array& v, const std::string& loss) -> py::array {
                 const Loss kind = parse_loss(loss);
                 return dispatch_dtype(theta, "theta", [&](auto t) {
                     return py::array(hvp_impl<decltype(t)>(c, theta, x, y, v, kind));
                 });
             },
             "theta"_a, "x"_a, "y"_a, "v"_a, "loss"_a = "mse");
}

}  // namespace metafast::bindings
