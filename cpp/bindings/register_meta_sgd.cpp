// Binds MetaSgdLearner for float32 and float64 (MetaSGDFloat32, MetaSGDFloat64). Arrays are
// checked with the GIL held; all numerical work then runs with the GIL released and the
// learner's mutex held (never the other way round, so the two cannot deadlock).
#include "learner_support.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "metafast/meta_sgd_learner.hpp"
#include "metafast/tasks.hpp"

namespace metafast::bindings {
namespace {

template <class T>
using Learner = MetaSgdLearner<T>;

template <class T>
void bind_learner(py::module_& m, const char* name) {
    py::class_<Learner<T>> cls(m, name);
    cls.def(py::init([](const Mlp& mlp, const std::string& loss, std::int64_t inner_steps, bool first_order,
                        const std::string& optimizer, double lr, double beta1, double beta2, double eps,
                        int num_threads) {
                const Loss kind = parse_loss(loss);
                check_loss_matches_output(kind, mlp.output_activation(), mlp.output_width());
                const MetaSgdConfig config{kind, checked_count(inner_steps, "inner_steps", 100000), first_order};
                return std::make_unique<Learner<T>>(
                    mlp, config, checked_optimizer(optimizer, "meta_optimizer", lr, "meta_lr", beta1, beta2, eps),
                    checked_threads(num_threads));
            }),
            "mlp"_a, "loss"_a, "inner_steps"_a, "first_order"_a, "meta_optimizer"_a, "meta_lr"_a, "beta1"_a, "beta2"_a,
            "eps"_a, "num_threads"_a);
    add_learner_methods<T>(cls);
    add_theta_alpha<T>(cls);
    add_supervised_methods<T>(cls);
    cls.def("meta_gradient",
            [](Learner<T>& l, const py::array& xs, const py::array& ys, const py::array& xq, const py::array& yq) {
                const TaskBatchView<T> batch = checked_batch<T>(l.mlp(), l.config().loss, xs, ys, xq, yq);
                const std::size_t n = l.num_params();
                py::array_t<T> g_theta(static_cast<py::ssize_t>(n)), g_alpha(static_cast<py::ssize_t>(n));
                T* gt = g_theta.mutable_data();
                T* ga = g_alpha.mutable_data();
                const double loss = without_gil(l, [&] {
                    const double value = l.meta_gradient(batch);
                    std::copy(l.mean_gradient().begin(), l.mean_gradient().begin() + n, gt);
                    std::copy(l.mean_gradient().begin() + n, l.mean_gradient().begin() + 2 * n, ga);
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
                std::size_t iterations, std::int64_t meta_batch) {
                 check_family(l.mlp(), l.config().loss, family);
                 const std::size_t tasks = checked_count(meta_batch, "meta_batch", max_tasks);
                 return fit_in_core(l, iterations, [&](double* losses) {
                     return l.fit(family, seed, first_iteration, iterations, tasks, losses);
                 });
             },
             "family"_a, "seed"_a, "first_iteration"_a, "iterations"_a, "meta_batch"_a,
             "Meta-train on natively sampled tasks; returns (losses, diverged).");
}

}  // namespace

void register_meta_sgd(py::module_& m) {
    bind_learner<float>(m, "MetaSGDFloat32");
    bind_learner<double>(m, "MetaSGDFloat64");
}

}  // namespace metafast::bindings
