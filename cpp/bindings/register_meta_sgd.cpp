// Binds MetaSgdLearner for each network and dtype (MetaSGDFloat32, MetaSGDFloat64 on an MLP,
// MetaSGDConvNetFloat32, MetaSGDConvNetFloat64 on a ConvNet). Arrays are
// checked with the GIL held; all numerical work then runs with the GIL released and the
// learner's mutex held (never the other way round, so the two cannot deadlock).
#include "learner_support.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metafast/meta_sgd_learner.hpp"
#include "metafast/tasks.hpp"

namespace metafast::bindings {
namespace {

template <class Net, class T>
void bind_learner(py::module_& m, const char* name) {
    using Learner = MetaSgdLearner<Net, T>;
    py::class_<Learner> cls(m, name);
    cls.def(py::init([](const Net& net, const std::string& loss, std::int64_t inner_steps, bool first_order,
                        const std::string& optimizer, double lr, double beta1, double beta2, double eps,
                        std::uint64_t seed, int num_threads, bool alpha_per_step, std::optional<double> clip_grad_norm,
                        std::optional<double> fixed_inner_lr, std::optional<double> alpha_lr) {
                const Loss kind = parse_loss(loss);
                check_loss_matches_output(kind, net.output_activation(), net.output_width());
                MetaSgdConfig config{kind, checked_count(inner_steps, "inner_steps", 100000), first_order};
                config.alpha_per_step = alpha_per_step;
                config.learn_alpha = !fixed_inner_lr;
                if (clip_grad_norm) config.clip_grad_norm = checked_positive(*clip_grad_norm, "clip_grad_norm");
                if (fixed_inner_lr) checked_within(*fixed_inner_lr, "inner_lr", 0.0, 1e30);
                OptimizerConfig meta = checked_optimizer(optimizer, "meta_optimizer", lr, "meta_lr", beta1, beta2, eps);
                meta.tail_lr = alpha_lr ? checked_positive(*alpha_lr, "alpha_lr") : meta.lr;
                return std::make_unique<Learner>(net, config, meta, seed, checked_threads(num_threads),
                                                    fixed_inner_lr.value_or(0.0));
            }),
            "network"_a, "loss"_a, "inner_steps"_a, "first_order"_a, "meta_optimizer"_a, "meta_lr"_a, "beta1"_a, "beta2"_a,
            "eps"_a, "seed"_a, "num_threads"_a, "alpha_per_step"_a = false, "clip_grad_norm"_a = py::none(),
            "fixed_inner_lr"_a = py::none(), "alpha_lr"_a = py::none(),
            "A Meta-SGD learner (alpha learning at alpha_lr, by default meta_lr; fit's tasks keyed by seed); with "
            "fixed_inner_lr, MAML: alpha that step size for every parameter, not learned.");
    add_learner_methods<T>(cls);
    add_theta_alpha<T>(cls);
    add_supervised_methods<T>(cls);
    add_supervised_memory<T>(cls);
    cls.def_static("learner_bytes", &Learner::learner_bytes, "num_params"_a, "alpha_vectors"_a,
                   "Bytes a learner of num_params parameters keeps for its life (alpha_vectors: vectors of alpha "
                   "learned, 0 for MAML).");
    cls.def("meta_gradient",
            [](Learner& l, const py::array& xs, const py::array& ys, const py::array& xq, const py::array& yq,
               const py::object& relay, std::size_t first_task, std::size_t total_tasks) {
                const TaskBatchView<T> batch = checked_batch<T>(l.network(), l.config().loss, xs, ys, xq, yq, !relay.is_none());
                const std::size_t n = l.num_params(), alphas = l.params().size() - n;
                py::array_t<T> g_theta(static_cast<py::ssize_t>(n)), g_alpha(static_cast<py::ssize_t>(alphas));
                T* gt = g_theta.mutable_data();
                T* ga = g_alpha.mutable_data();
                const FitResult result = step_in_core<T>(l, relay, first_task, total_tasks, batch.tasks, [&](auto& combine) {
                    const FitResult run = l.meta_gradient(batch, combine);
                    std::copy(l.mean_gradient().begin(), l.mean_gradient().begin() + n, gt);
                    std::copy(l.mean_gradient().begin() + n, l.mean_gradient().begin() + n + alphas, ga);
                    return run;
                });
                return py::make_tuple(result.last_score, g_theta, g_alpha, result.failed_elsewhere);
            },
            "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a, "relay"_a = py::none(), "first_task"_a = 0,
            "total_tasks"_a = 0, "(loss, g_theta, g_alpha, failed_elsewhere): the mean over the meta-batch.")
        .def("meta_step",
             [](Learner& l, const py::array& xs, const py::array& ys, const py::array& xq, const py::array& yq,
                const py::object& relay, std::size_t first_task, std::size_t total_tasks) {
                 const TaskBatchView<T> batch = checked_batch<T>(l.network(), l.config().loss, xs, ys, xq, yq, !relay.is_none());
                 const FitResult result = step_in_core<T>(l, relay, first_task, total_tasks, batch.tasks,
                                                          [&](auto& combine) { return l.meta_step(batch, combine); });
                 return py::make_tuple(result.completed == 1, result.last_score, result.failed_elsewhere);
             },
             "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a, "relay"_a = py::none(), "first_task"_a = 0,
             "total_tasks"_a = 0,
             "One meta-iteration; returns (updated, loss, failed_elsewhere). Not updated when not finite.")
        .def("fit",
             [](Learner& l, const TaskFamily& family, std::uint64_t first_iteration, std::size_t iterations,
                std::int64_t meta_batch, const py::object& relay, std::size_t first_task, std::size_t total_tasks) {
                 check_family(l.network(), l.config().loss, family);
                 const std::size_t tasks = checked_share(meta_batch, relay);
                 return fit_in_core<T>(l, iterations, relay, first_task, total_tasks, tasks, [&](double* losses, auto& combine) {
                     return l.fit(family, first_iteration, iterations, tasks, losses, combine);
                 });
             },
             "family"_a, "first_iteration"_a, "iterations"_a, "meta_batch"_a, "relay"_a = py::none(),
             "first_task"_a = 0, "total_tasks"_a = 0,
             "Meta-train on natively sampled tasks; returns (losses, diverged, failed_elsewhere). With a relay, "
             "meta_batch is this process's share, tasks [first_task, first_task + meta_batch) of total_tasks.");
}

}  // namespace

void register_meta_sgd(py::module_& m) {
    bind_learner<Mlp, float>(m, "MetaSGDFloat32");
    bind_learner<Mlp, double>(m, "MetaSGDFloat64");
    bind_learner<ConvNet, float>(m, "MetaSGDConvNetFloat32");
    bind_learner<ConvNet, double>(m, "MetaSGDConvNetFloat64");
}

}  // namespace metafast::bindings
