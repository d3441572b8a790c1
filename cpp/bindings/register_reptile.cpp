// Binds ReptileLearner for float32 and float64 (ReptileFloat32, ReptileFloat64), with the same
// locking discipline as the Meta-SGD learners.
#include "learner_support.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "metafast/reptile_learner.hpp"

namespace metafast::bindings {
namespace {

template <class T>
using Learner = ReptileLearner<T>;

void check_epsilon(double epsilon) {
    require(std::isfinite(epsilon) && epsilon > 0 && epsilon <= 1,
            "epsilon must lie in (0, 1], got " + std::to_string(epsilon));
}

template <class T>
void bind_learner(py::module_& m, const char* name) {
    py::class_<Learner<T>>(m, name)
        .def(py::init([](const Mlp& mlp, const std::string& loss, const std::string& optimizer, double lr,
                         double beta1, double beta2, double eps, std::size_t inner_epochs, std::size_t inner_batch,
                         bool reset_optimizer, bool shuffle, std::uint64_t seed, int num_threads) {
                 const Loss kind = parse_loss(loss);
                 check_loss_matches_output(kind, mlp.output_activation(), mlp.output_width());
                 require(std::isfinite(lr) && lr > 0, "inner_lr must be a finite number > 0, got " + std::to_string(lr));
                 require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "adam_betas must lie in [0, 1)");
                 require(std::isfinite(eps) && eps > 0, "adam_eps must be a finite number > 0");
                 require(inner_epochs >= 1 && inner_epochs <= (std::size_t{1} << 24), "inner_epochs must lie in [1, 2^24]");
                 require(inner_batch >= 1 && inner_batch <= (std::size_t{1} << 31), "inner_batch must lie in [1, 2^31]");
                 require(num_threads >= 0 && num_threads <= max_threads_allowed, "num_threads must lie in [0, 1024] (0 = all cores)");
                 ReptileConfig config{kind, {parse_optimizer(optimizer, "inner_optimizer"), lr, beta1, beta2, eps},
                                      inner_epochs, inner_batch, reset_optimizer, shuffle};
                 return std::make_unique<Learner<T>>(mlp, config, seed, num_threads);
             }),
             "mlp"_a, "loss"_a, "inner_optimizer"_a, "inner_lr"_a, "beta1"_a, "beta2"_a, "eps"_a, "inner_epochs"_a,
             "inner_batch"_a, "reset_optimizer"_a, "shuffle"_a, "seed"_a, "num_threads"_a)
        .def_property("num_threads", &Learner<T>::num_threads,
                      [](Learner<T>& l, int threads) {
                          require(threads >= 0 && threads <= max_threads_allowed, "num_threads must lie in [0, 1024] (0 = all cores)");
                          without_gil(l, [&] { l.set_num_threads(threads); });
                      })
        .def("inner_updates", &Learner<T>::inner_updates, "rows"_a)
        .def("get_params",
             [](Learner<T>& l) {
                 std::lock_guard<std::mutex> lock(l.mutex());
                 return copy_out(l.params().data(), l.num_params());
             })
        .def("set_params",
             [](Learner<T>& l, const py::array& theta) {
                 const T* t = checked_vector<T>(theta, "theta", l.num_params());
                 std::lock_guard<std::mutex> lock(l.mutex());
                 std::copy(t, t + l.num_params(), l.params().data());
             },
             "theta"_a)
        .def("get_optimizer_state", &get_optimizer_state<T, Learner<T>>)
        .def("set_optimizer_state", &set_optimizer_state<T, Learner<T>>, "m"_a, "v"_a, "step"_a)
        .def("meta_step",
             [](Learner<T>& l, const py::array& xs, const py::array& ys, const py::array& xq, const py::array& yq,
                double epsilon, std::uint64_t iteration) {
                 check_epsilon(epsilon);
                 const TaskBatchView<T> batch = checked_batch<T>(l.mlp(), l.config().loss, xs, ys, xq, yq);
                 double loss = 0.0;
                 const bool ok = without_gil(l, [&] { return l.meta_step(batch, epsilon, iteration, loss); });
                 return py::make_tuple(ok, loss);
             },
             "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a, "epsilon"_a, "iteration"_a,
             "One meta-iteration; returns (updated, loss). Not updated when not finite.")
        .def("fit",
             [](Learner<T>& l, const TaskFamily& family, std::uint64_t first_iteration, std::size_t iterations,
                std::size_t meta_batch, double epsilon_start, double epsilon_end, std::size_t offset, std::size_t span) {
                 check_family(l.mlp(), l.config().loss, family);
                 require(meta_batch >= 1, "meta_batch must be at least 1, got " + std::to_string(meta_batch));
                 check_epsilon(epsilon_start);
                 require(std::isfinite(epsilon_end) && epsilon_end >= 0 && epsilon_end <= 1,
                         "epsilon_final must lie in [0, 1]");
                 std::vector<double> losses(iterations);
                 const auto result = without_gil(l, [&] {
                     return l.fit(family, first_iteration, iterations, meta_batch, epsilon_start, epsilon_end, offset,
                                  span, losses.data());
                 });
                 return py::make_tuple(copy_out(losses.data(), result.completed), result.diverged);
             },
             "family"_a, "first_iteration"_a, "iterations"_a, "meta_batch"_a, "epsilon_start"_a, "epsilon_end"_a,
             "offset"_a, "span"_a, "Meta-train on natively sampled tasks; returns (losses, diverged).")
        .def("evaluate", &evaluate_tasks<T, Learner<T>>, "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a, "steps"_a)
        .def("adapt", &adapt_task<T, Learner<T>>, "x_support"_a, "y_support"_a, "steps"_a);
}

}  // namespace

void register_reptile(py::module_& m) {
    bind_learner<float>(m, "ReptileFloat32");
    bind_learner<double>(m, "ReptileFloat64");
}

}  // namespace metafast::bindings
