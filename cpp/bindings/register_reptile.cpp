// Binds ReptileLearner for each network and dtype (ReptileFloat32, ReptileFloat64 on an MLP,
// ReptileConvNetFloat32, ReptileConvNetFloat64 on a ConvNet), with the same
// locking discipline as the Meta-SGD learners.
#include "learner_support.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "metafast/reptile_learner.hpp"

namespace metafast::bindings {
namespace {

template <class Net, class T>
void bind_learner(py::module_& m, const char* name) {
    using Learner = ReptileLearner<Net, T>;
    py::class_<Learner> cls(m, name);
    cls.def(py::init([](const Net& net, const std::string& loss, const std::string& optimizer, double lr,
                        double beta1, double beta2, double eps, std::int64_t inner_epochs, std::int64_t inner_batch,
                        bool reset_optimizer, bool shuffle, std::uint64_t seed, int num_threads, double epsilon,
                        double epsilon_final) {
                const Loss kind = parse_loss(loss);
                check_loss_matches_output(kind, net.output_activation(), net.output_width());
                const ReptileConfig config{kind,
                                           checked_optimizer(optimizer, "inner_optimizer", lr, "inner_lr", beta1, beta2, eps),
                                           checked_count(inner_epochs, "inner_epochs", std::size_t{1} << 24),
                                           checked_count(inner_batch, "inner_batch", std::size_t{1} << 31),
                                           reset_optimizer, shuffle};
                const EpsilonSchedule schedule{checked_within(epsilon, "epsilon", 0, 1, true),
                                               checked_within(epsilon_final, "epsilon_final", 0, 1), 0, 0};
                return std::make_unique<Learner>(net, config, schedule, seed, checked_threads(num_threads));
            }),
            "network"_a, "loss"_a, "inner_optimizer"_a, "inner_lr"_a, "beta1"_a, "beta2"_a, "eps"_a, "inner_epochs"_a,
            "inner_batch"_a, "reset_optimizer"_a, "shuffle"_a, "seed"_a, "num_threads"_a, "epsilon"_a,
            "epsilon_final"_a,
            "A Reptile learner; the step size goes from epsilon to epsilon_final over each fit (equal: constant).");
    add_learner_methods<T>(cls);
    add_supervised_methods<T>(cls);
    add_supervised_memory<T>(cls);
    cls.def_static("learner_bytes", &Learner::learner_bytes, "num_params"_a,
                   "Bytes a learner of num_params parameters keeps for its life.");
    cls.def("inner_updates", &Learner::inner_updates, "rows"_a)
        .def("get_params",
             [](Learner& l) {
                 std::lock_guard<std::mutex> lock(l.mutex());
                 return copy_out(l.params().data(), l.num_params());
             })
        .def("set_params",
             [](Learner& l, const py::array& theta) {
                 const T* t = checked_vector<T>(theta, "theta", l.num_params());
                 std::lock_guard<std::mutex> lock(l.mutex());
                 std::copy(t, t + l.num_params(), l.params().data());
             },
             "theta"_a)
        .def("meta_step",
             [](Learner& l, const py::array& xs, const py::array& ys, const py::array& xq, const py::array& yq,
                std::uint64_t iteration, std::size_t position, std::size_t span, const py::object& relay,
                std::size_t first_task, std::size_t total_tasks) {
                 const TaskBatchView<T> batch = checked_batch<T>(l.network(), l.config().loss, xs, ys, xq, yq, !relay.is_none());
                 const FitResult result = step_in_core<T>(l, relay, first_task, total_tasks, batch.tasks, [&](auto& combine) {
                     return l.meta_step(batch, iteration, position, span, combine);
                 });
                 return py::make_tuple(result.completed == 1, result.last_score, result.failed_elsewhere);
             },
             "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a, "iteration"_a, "position"_a, "span"_a,
             "relay"_a = py::none(), "first_task"_a = 0, "total_tasks"_a = 0,
             "One meta-iteration, `position` of `span` into the epsilon schedule (span 0: epsilon); returns "
             "(updated, loss, failed_elsewhere). Not updated when not finite.")
        .def("fit",
             [](Learner& l, const TaskFamily& family, std::uint64_t first_iteration, std::size_t iterations,
                std::int64_t meta_batch, std::size_t offset, std::size_t span, const py::object& relay,
                std::size_t first_task, std::size_t total_tasks) {
                 check_family(l.network(), l.config().loss, family);
                 const std::size_t tasks = checked_share(meta_batch, relay);
                 return fit_in_core<T>(l, iterations, relay, first_task, total_tasks, tasks, [&](double* losses, auto& combine) {
                     return l.fit(family, first_iteration, iterations, tasks, offset, span, losses, combine);
                 });
             },
             "family"_a, "first_iteration"_a, "iterations"_a, "meta_batch"_a, "offset"_a, "span"_a,
             "relay"_a = py::none(), "first_task"_a = 0, "total_tasks"_a = 0,
             "Meta-train on natively sampled tasks, `offset` of `span` into the epsilon schedule; returns "
             "(losses, diverged, failed_elsewhere).");
}

}  // namespace

void register_reptile(py::module_& m) {
    bind_learner<Mlp, float>(m, "ReptileFloat32");
    bind_learner<Mlp, double>(m, "ReptileFloat64");
    bind_learner<ConvNet, float>(m, "ReptileConvNetFloat32");
    bind_learner<ConvNet, double>(m, "ReptileConvNetFloat64");
}

}  // namespace metafast::bindings
