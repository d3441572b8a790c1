// Binds MetaSgdLearner for float32 and float64 (MetaSGDFloat32, MetaSGDFloat64). Arrays are
// checked with the GIL held; all numerical work then runs with the GIL released and the
// learner's mutex held (never the other way round, so the two cannot deadlock).
#include "learner_support.hpp"

#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "metafast/meta_sgd_learner.hpp"
#include "metafast/tasks.hpp"

namespace metafast::bindings {
namespace {

template <class T>
using Learner = MetaSgdLearner<T>;

template <class T>
void bind_learner(py::module_& m, const char* name) {
    py::class_<Learner<T>>(m, name)
        .def(py::init([](const Mlp& mlp, const std::string& loss, std::size_t inner_steps, bool first_order,
                         const std::string& optimizer, double lr, double beta1, double beta2, double eps,
                         int num_threads) {
                 const Loss kind = parse_loss(loss);
                 check_loss_matches_output(kind, mlp.output_activation(), mlp.output_width());
                 require(inner_steps >= 1 && inner_steps <= 100000,
                         "inner_steps must lie in [1, 100000], got " + std::to_string(inner_steps));
                 require(std::isfinite(lr) && lr > 0, "meta_lr must be a finite number > 0, got " + std::to_string(lr));
                 require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "adam_betas must lie in [0, 1)");
                 require(std::isfinite(eps) && eps > 0, "adam_eps must be a finite number > 0");
                 require(num_threads >= 0 && num_threads <= max_threads_allowed, "num_threads must lie in [0, 1024] (0 = all cores)");
                 OptimizerConfig config{parse_optimizer(optimizer, "meta_optimizer"), lr, beta1, beta2, eps};
                 return std::make_unique<Learner<T>>(mlp, MetaSgdConfig{kind, inner_steps, first_order}, config,
                                                     num_threads);
             }),
             "mlp"_a, "loss"_a, "inner_steps"_a, "first_order"_a, "meta_optimizer"_a, "meta_lr"_a,
             "beta1"_a, "beta2"_a, "eps"_a, "num_threads"_a)
        .def_property("num_threads", &Learner<T>::num_threads,
                      [](Learner<T>& l, int threads) {
                          require(threads >= 0 && threads <= max_threads_allowed, "num_threads must lie in [0, 1024] (0 = all cores)");
                          without_gil(l, [&] { l.set_num_threads(threads); });
                      })
        .def("get_params", &get_theta_alpha<T, Learner<T>>)
        .def("set_params", &set_theta_alpha<T, Learner<T>>, "theta"_a, "alpha"_a)
        .def("get_optimizer_state", &get_optimizer_state<T, Learner<T>>)
        .def("set_optimizer_state", &set_optimizer_state<T, Learner<T>>, "m"_a, "v"_a, "step"_a)
        .def("meta_gradient",
             [](Learner<T>& l, const py::array& xs, const py::array& ys, const py::array& xq, const py::array& yq) {
                 const TaskBatchView<T> batch = checked_batch<T>(l.mlp(), l.config().loss, xs, ys, xq, yq);
                 const std::size_t n = l.num_params();
                 py::array_t<T> g_theta(static_cast<py::ssize_t>(n)), g_alpha(static_cast<py::ssize_t>(n));
                 T* gt = g_theta.mutable_data();
                 T* ga = g_alpha.mutable_data();
                 const double loss = without_gil(l, [&] {
                     const double value = l.meta_gradient(batch);
                     std::copy(l.mean_gradient().begin(), l.mean_gradient().begin() + n, gt);
                     std::copy(l.mean_gradient().begin() + n, l.mean_gradient().end(), ga);
                     return value;
                 });
                 return py::make_tuple(loss, g_theta, g_alpha);
             },
             "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a)
        .def("meta_step",
             [](Learner<T>& l, const py::array& xs, const py::array& ys, const py::array& xq, const py::array& yq) {
                 const TaskBatchView<T> batch = checked_batch<T>(l.mlp(), l.config().loss, xs, ys, xq, yq);
                 double loss = 0.0;
                 const bool ok = without_gil(l, [&] { return l.meta_step(batch, loss); });
                 return py::make_tuple(ok, loss);
             },
             "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a,
             "One meta-iteration; returns (updated, loss). Not updated when not finite.")
        .def("fit",
             [](Learner<T>& l, const TaskFamily& family, std::uint64_t seed, std::uint64_t first_iteration,
                std::size_t iterations, std::size_t meta_batch) {
                 check_family(l.mlp(), l.config().loss, family);
                 require(meta_batch >= 1, "meta_batch must be at least 1, got " + std::to_string(meta_batch));
                 std::vector<double> losses(iterations);
                 const auto result = without_gil(l, [&] {
                     return l.fit(family, seed, first_iteration, iterations, meta_batch, losses.data());
                 });
                 return py::make_tuple(copy_out(losses.data(), result.completed), result.diverged);
             },
             "family"_a, "seed"_a, "first_iteration"_a, "iterations"_a, "meta_batch"_a,
             "Meta-train on natively sampled tasks; returns (losses, diverged).")
        .def("evaluate", &evaluate_tasks<T, Learner<T>>, "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a, "steps"_a)
        .def("adapt", &adapt_task<T, Learner<T>>, "x_support"_a, "y_support"_a, "steps"_a);
}

}  // namespace

void register_meta_sgd(py::module_& m) {
    bind_learner<float>(m, "MetaSGDFloat32");
    bind_learner<double>(m, "MetaSGDFloat64");
}

}  // namespace metafast::bindings
