// What the learner bindings share: the checks of their hyperparameters (each said once, here),
// batch and family checks, copies out of the core, the locking discipline, and the methods
// every learner class has, added by one template per group (as boost-histogram's
// register_storage does): each class binds only its constructor and what is its own.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "arrays.hpp"
#include "checks.hpp"
#include "interrupts.hpp"
#include "metafast/denormals.hpp"
#include "metafast/forest_bytes.hpp"
#include "metafast/machine_exchange.hpp"
#include "metafast/optim.hpp"
#include "metafast/task_batch.hpp"
#include "metafast/meta_iteration.hpp"
#include "metafast/tasks.hpp"
#include "metafast/thread_budget.hpp"

namespace metafast::bindings {

// Runs f with the GIL released and the learner locked (in that order: a thread holding the
// learner's mutex never waits for the GIL, so the two locks cannot deadlock), and denormals
// flushed to zero on this thread (parallel_for does it on the others).
template <class L, class F>
auto without_gil(L& learner, F&& f) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(learner.mutex());
    [[maybe_unused]] const FlushDenormals flush;
    return f();
}

// ---------------------------------------------------------------- hyperparameters
// An optimizer: `kind` names the argument choosing it (meta_optimizer, inner_optimizer) and
// `lr` its learning rate's (meta_lr, inner_lr).
inline OptimizerConfig checked_optimizer(const std::string& name, const char* kind, double lr, const char* lr_name,
                                         double beta1, double beta2, double eps) {
    require(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
            "adam_betas must lie in [0, 1), got (" + number_text(beta1) + ", " + number_text(beta2) + ")");
    return {parse_optimizer(name, kind), checked_positive(lr, lr_name), beta1, beta2, checked_positive(eps, "adam_eps")};
}

// ------------------------------------------------------------------------ batches
// A meta-batch's arrays, checked against the network and the loss; `share`: a distributed
// run's share of it, which may hold no task (more processes than tasks).
template <class T, class Net>
TaskBatchView<T> checked_batch(const Net& net, Loss loss, const py::array& x_support,
                               const py::array& y_support, const py::array& x_query,
                               const py::array& y_query, bool share = false) {
    const auto in = static_cast<py::ssize_t>(net.input_width());
    std::vector<Dim> xs_dims{{-1, "tasks", share}, {-1, "support"}, {in, ""}};
    TaskBatchView<T> view;
    view.x_support = checked_data<T>(x_support, "x_support", xs_dims);
    const py::ssize_t tasks = xs_dims[0].size, support = xs_dims[1].size;
    check_finite("x_support", view.x_support, element_count(xs_dims));
    std::vector<Dim> xq_dims{{tasks, "", share}, {-1, "query"}, {in, ""}};
    view.x_query = checked_data<T>(x_query, "x_query", xq_dims);
    const py::ssize_t query = xq_dims[1].size;
    check_finite("x_query", view.x_query, element_count(xq_dims));
    const Targets<T> ys = checked_targets<T>(net, loss, y_support, "y_support", {{tasks, "", share}, {support, ""}});
    const Targets<T> yq = checked_targets<T>(net, loss, y_query, "y_query", {{tasks, "", share}, {query, ""}});
    view.y_support = ys.values;
    view.labels_support = ys.labels;
    view.y_query = yq.values;
    view.labels_query = yq.labels;
    view.tasks = static_cast<std::size_t>(tasks);
    view.shape = {net.input_width(), net.output_width(), static_cast<std::size_t>(support),
                  static_cast<std::size_t>(query), uses_labels(loss)};
    return view;
}

template <class Net>
void check_family(const Net& net, Loss loss, const TaskFamily& family) {
    const TaskShape s = task_shape(family);
    require(s.input_width == net.input_width(),
            "the tasks have " + std::to_string(s.input_width) + " inputs but the model takes " +
                std::to_string(net.input_width()));
    require(s.output_width == net.output_width(),
            "the tasks need " + std::to_string(s.output_width) + " outputs but the model has " +
                std::to_string(net.output_width()));
    require(s.has_labels == uses_labels(loss),
            s.has_labels ? "the tasks have class labels: use loss 'softmax_ce'"
                         : "loss 'softmax_ce' needs tasks with class labels");
    require(!(loss == Loss::bce && std::holds_alternative<Sinusoid>(family)),
            "loss 'bce' needs binary targets, but Sinusoid tasks are regression tasks: use 'mse'");
}

template <class T>
py::array_t<T> copy_out(const T* data, std::size_t n) {
    py::array_t<T> out(static_cast<py::ssize_t>(n));
    std::copy(data, data + n, out.mutable_data());
    return out;
}

template <class T>
const T* checked_vector(const py::array& a, const char* name, std::size_t n) {
    std::vector<Dim> dims{{static_cast<py::ssize_t>(n), ""}};
    const T* data = checked_data<T>(a, name, dims);
    check_finite(name, data, n);
    return data;
}

inline void check_steps(const std::vector<std::size_t>& steps) {
    require(!steps.empty(), "steps must not be empty");
    for (std::size_t i = 1; i < steps.size(); ++i) require(steps[i - 1] < steps[i], "steps must be strictly increasing");
}

// One task's support set, checked against the model and the loss.
template <class T>
struct Task {
    const T* x;
    std::size_t rows;
    Targets<T> targets;
};

template <class T, class Net>
Task<T> checked_task(const Net& net, Loss loss, const py::array& x, const py::array& y) {
    std::vector<Dim> x_dims{{-1, "rows"}, {static_cast<py::ssize_t>(net.input_width()), ""}};
    const T* data = checked_data<T>(x, "x_support", x_dims);
    check_finite("x_support", data, element_count(x_dims));
    const Targets<T> targets = checked_targets<T>(net, loss, y, "y_support", {{x_dims[0].size, ""}});
    return {data, static_cast<std::size_t>(x_dims[0].size), targets};
}

// The bindings both learners share: evaluation, adaptation and the optimizer state.
template <class T, class L>
py::tuple evaluate_tasks(L& learner, const py::array& xs, const py::array& ys, const py::array& xq,
                         const py::array& yq, const std::vector<std::size_t>& steps) {
    const TaskBatchView<T> batch = checked_batch<T>(learner.network(), learner.config().loss, xs, ys, xq, yq);
    check_steps(steps);
    const auto rows = static_cast<py::ssize_t>(batch.tasks), cols = static_cast<py::ssize_t>(steps.size());
    py::array_t<double> losses({rows, cols}), accuracies({rows, cols});
    double* lp = losses.mutable_data();
    double* ap = accuracies.mutable_data();
    interruptible([&] { without_gil(learner, [&] { learner.evaluate(batch, steps, lp, ap); }); });
    return py::make_tuple(losses, accuracies);
}

template <class T, class L>
py::array_t<T> adapt_task(L& learner, const py::array& x, const py::array& y, std::size_t steps) {
    const Task<T> task = checked_task<T>(learner.network(), learner.config().loss, x, y);
    py::array_t<T> out(static_cast<py::ssize_t>(learner.num_params()));
    T* op = out.mutable_data();
    interruptible([&] { without_gil(learner, [&] { learner.adapt(task.x, task.rows, task.targets, steps, op); }); });
    return out;
}

// theta and alpha of a learner whose params() hold theta (num_params() values), then alpha
// (the rest: one vector, or one per inner step, flat); theta alone when there is no alpha.
template <class T, class L>
py::tuple get_theta_alpha(L& learner) {
    std::lock_guard<std::mutex> lock(learner.mutex());
    const std::size_t n = learner.num_params(), alphas = learner.params().size() - n;
    if (alphas == 0) return py::make_tuple(copy_out(learner.params().data(), n));
    return py::make_tuple(copy_out(learner.params().data(), n), copy_out(learner.params().data() + n, alphas));
}

template <class T, class L>
void set_theta_alpha(L& learner, const py::array& theta, const py::object& alpha) {
    const std::size_t n = learner.num_params(), alphas = learner.params().size() - n;  // fixed at construction
    const T* t = checked_vector<T>(theta, "theta", n);
    require(alpha.is_none() == (alphas == 0), alphas == 0 ? "this learner has no alpha" : "alpha is missing");
    const T* a = alphas == 0 ? nullptr : checked_vector<T>(alpha.cast<py::array>(), "alpha", alphas);
    std::lock_guard<std::mutex> lock(learner.mutex());
    std::copy(t, t + n, learner.params().data());
    if (a) std::copy(a, a + alphas, learner.params().data() + n);
}

template <class T, class L>
py::tuple get_optimizer_state(L& learner) {
    std::lock_guard<std::mutex> lock(learner.mutex());
    const OptimizerState<T>& s = learner.optimizer_state();
    return py::make_tuple(copy_out(s.m.data(), s.m.size()), copy_out(s.v.data(), s.v.size()), s.step);
}

template <class T, class L>
void set_optimizer_state(L& learner, const py::array& m, const py::array& v, std::int64_t step) {
    const std::size_t n = learner.optimizer_state().m.size();
    const T* first = checked_vector<T>(m, "optimizer m", n);
    const T* second = checked_vector<T>(v, "optimizer v", n);
    require(step >= 0, "optimizer step must be >= 0");
    for (std::size_t i = 0; i < n; ++i) require(second[i] >= 0, "optimizer v must be >= 0");
    std::lock_guard<std::mutex> lock(learner.mutex());
    OptimizerState<T>& s = learner.optimizer_state();
    s.m.assign(first, first + n);
    s.v.assign(second, second + n);
    s.step = step;
}

// ----------------------------------------------------- combination across processes
// The combination of the processes' forests of the task tree (task_tree.hpp) through a Python
// object (a metafast.distributed.TaskRelay over MPI) that only moves bytes. In round j = 0,
// 1, ... a process r with bit j set sends its forest to process r - 2^j and is done; a process
// r with r + 2^j < R receives the forest of processes r + 2^j .. r + 2^(j+1) - 1 and merges
// it into its own. After ceil(log2 R) rounds process 0 holds the root, which it broadcasts.
// The GIL is taken once per sum; the core itself never sees MPI.
template <class T>
class PythonRelay final : public Combination<T> {
public:
    // `relay`: its `rank` among `size` processes (or machines), which hold tasks
    // [bounds[r], bounds[r + 1]) of `total`.
    PythonRelay(py::object relay, std::size_t total)
        : relay_(std::move(relay)),
          rank_(relay_.attr("rank").cast<std::size_t>()),
          size_(relay_.attr("size").cast<std::size_t>()),
          bounds_(relay_.attr("bounds").cast<std::vector<std::size_t>>()),
          total_(total),
          received_(rounds(size_)) {
        require(bounds_.size() == size_ + 1 && rank_ < size_ && bounds_.back() <= total_ &&
                    std::is_sorted(bounds_.begin(), bounds_.end()),
                "a relay's bounds must hold its processes' adjacent task ranges");
    }

    void combine(TaskForest<T>& forest, std::size_t width, bool& failed) override {
        py::gil_scoped_acquire gil;
        for (std::size_t step = 1, round = 0; step < size_; step *= 2, ++round) {
            if (rank_ & step) {
                pack(forest, width, failed, sent_);
                relay_.attr("send")(sent_.view, rank_ - step);
                break;
            }
            if (rank_ + step < size_) {
                const std::size_t from = rank_ + step, to = std::min(rank_ + 2 * step, size_);
                Message& in = received_[round];
                in.shape(TaskForest<T>::nodes_of(bounds_[from], bounds_[to], total_), width);
                relay_.attr("receive")(in.view, from);
                unpack(in, width, failed, forest);
            }
        }
        if (rank_ == 0) pack(forest, width, failed, root_);
        root_.shape(1, width);
        relay_.attr("broadcast")(root_.view);
        forest.reset(total_, 0);
        unpack(root_, width, failed, forest);
    }

    std::size_t first_task() const override { return bounds_[rank_]; }
    std::size_t total_tasks(std::size_t) const override { return total_; }

private:
    // A message: a forest's header (forest_bytes.hpp), then the nodes' values. Its view for
    // Python is made once per shape, over the buffer (which stays put while the shape does).
    struct Message {
        std::vector<std::uint64_t> words;
        py::array_t<std::uint8_t> view;
        std::size_t nodes = 0;

        void shape(std::size_t count, std::size_t width) {
            const std::size_t bytes = forest_bytes::header_words(count) * 8 + count * width * sizeof(T);
            if (nodes == count && view && static_cast<std::size_t>(view.size()) == bytes) return;
            words.assign((bytes + 7) / 8, 0);
            nodes = count;
            auto* data = reinterpret_cast<std::uint8_t*>(words.data());
            view = py::array_t<std::uint8_t>({static_cast<py::ssize_t>(bytes)}, {py::ssize_t{1}}, data,
                                             py::capsule(data, [](void*) {}));
        }
        T* values(std::size_t node, std::size_t width) {
            return reinterpret_cast<T*>(words.data() + forest_bytes::header_words(nodes)) + node * width;
        }
    };

    static std::size_t rounds(std::size_t size) {
        std::size_t count = 0;
        for (std::size_t step = 1; step < size; step *= 2) ++count;
        return count;
    }
    static void pack(const TaskForest<T>& forest, std::size_t width, bool failed, Message& out) {
        out.shape(forest.size(), width);
        forest_bytes::write_header(out.words.data(), forest, failed);
        if (width)
            for (std::size_t n = 0; n < forest.size(); ++n)
                std::memcpy(out.values(n, width), forest[n].values, width * sizeof(T));
    }

    // Merges the nodes of `in` (which follow the forest's tasks) into the forest.
    static void unpack(Message& in, std::size_t width, bool& failed, TaskForest<T>& forest) {
        const std::size_t count = forest_bytes::count(in.words.data());
        if (count != in.nodes)
            throw std::runtime_error("a relay message holds " + std::to_string(count) + " nodes of the task tree, " +
                                     std::to_string(in.nodes) + " expected: the processes disagree on the meta-batch");
        failed = failed || forest_bytes::failed(in.words.data());
        for (std::size_t n = 0; n < in.nodes; ++n) {
            const TreeNode<T> node = forest_bytes::node(in.words.data(), n, in.values(n, width));
            if (node.first != forest.next())
                throw std::runtime_error("a relay message starts at task " + std::to_string(node.first) + ", task " +
                                         std::to_string(forest.next()) + " expected");
            forest.push(node, width);
        }
    }

    py::object relay_;
    std::size_t rank_, size_;
    std::vector<std::size_t> bounds_;
    std::size_t total_;
    std::vector<Message> received_;  // one per round: merged nodes may stay in it until sent on
    Message sent_, root_;
};

// run(combine) with the combination `relay` asks for: this process alone (None), or tasks
// [first_task, first_task + local) of total_tasks combined through the machine's shared memory
// (relay.segment; with relay.across, the machine's first process's relay to the other
// machines) or by messages alone (relay.segment None).
template <class T, class Run>
auto with_combination(const py::object& relay, std::size_t first_task, std::size_t total_tasks, std::size_t local,
                      Run&& run) {
    if (relay.is_none()) {
        LocalSum<T> alone;
        return run(static_cast<Combination<T>&>(alone));
    }
    require(total_tasks >= 1 && first_task + local <= total_tasks,
            "a share of tasks [" + std::to_string(first_task) + ", " + std::to_string(first_task + local) +
                ") does not lie in a meta-batch of " + std::to_string(total_tasks));
    auto checked = [&](Combination<T>& combine) -> Combination<T>& {
        require(combine.first_task() == first_task, "the relay's share starts at task " +
                                                        std::to_string(combine.first_task()) + ", not " +
                                                        std::to_string(first_task));
        return combine;
    };
    const py::object segment = relay.attr("segment");
    if (segment.is_none()) {
        PythonRelay<T> messages(relay, total_tasks);
        return run(checked(messages));
    }
    auto memory = segment.cast<py::array_t<std::uint8_t, py::array::c_style>>();
    require(memory.writeable(), "the relay's segment must be writeable");
    const py::object across = relay.attr("across");
    std::optional<PythonRelay<T>> machines;
    if (!across.is_none()) machines.emplace(across, total_tasks);
    auto watch = [&relay] {
        py::gil_scoped_acquire gil;
        relay.attr("watch")();
    };
    MachineExchange<T> shared(memory.mutable_data(), static_cast<std::size_t>(memory.size()),
                              relay.attr("machine_rank").cast<std::size_t>(),
                              relay.attr("machine_bounds").cast<std::vector<std::size_t>>(), total_tasks,
                              relay.attr("machines").cast<std::size_t>() > 1, machines ? &*machines : nullptr, watch);
    return run(checked(shared));
}

// Tasks of this process's share: at least 1 alone, possibly 0 in a distributed run (more
// processes than tasks).
inline std::size_t checked_share(std::int64_t meta_batch, const py::object& relay) {
    if (!relay.is_none() && meta_batch == 0) return 0;
    return checked_count(meta_batch, "meta_batch", max_tasks);
}

// What the core's runs return to Python: (scores of the committed iterations, diverged,
// failed_elsewhere).
inline py::tuple run_result(const FitResult& result, const double* scores) {
    return py::make_tuple(copy_out(scores, result.completed), result.diverged, result.failed_elsewhere);
}

// Runs run(scores, combine) -> FitResult for `iterations` meta-iterations without the GIL.
// Ctrl-C stops it after the last meta-iteration completed (the scores say how many): Python's
// handler then runs as always, fit's raising KeyboardInterrupt with the learner consistent.
template <class T, class L, class Run>
py::tuple fit_in_core(L& learner, std::size_t iterations, const py::object& relay, std::size_t first_task,
                      std::size_t total_tasks, std::size_t local, Run&& run) {
    std::vector<double> scores(iterations);
    const FitResult result = with_combination<T>(relay, first_task, total_tasks, local, [&](Combination<T>& combine) {
        SigintForwarding forwarding;
        return without_gil(learner, [&] { return run(scores.data(), combine); });
    });
    return run_result(result, scores.data());
}

// A run of one meta-iteration (meta_step, meta_gradient): stopped by Ctrl-C, it changed
// nothing and raises what Python's handler raises (KeyboardInterrupt by default).
template <class T, class L, class Run>
FitResult step_in_core(L& learner, const py::object& relay, std::size_t first_task, std::size_t total_tasks,
                       std::size_t local, Run&& run) {
    const FitResult result = with_combination<T>(relay, first_task, total_tasks, local, [&](Combination<T>& combine) {
        SigintForwarding forwarding;
        return without_gil(learner, [&] { return run(combine); });
    });
    if (result.cancelled) raise_interrupt();
    return result;
}

// ------------------------------------------------------- methods of every learner
// num_threads and the optimizer state.
template <class T, class L>
void add_learner_methods(py::class_<L>& cls) {
    cls.def_property("num_threads", &L::num_threads,
                     [](L& l, int threads) { without_gil(l, [&] { l.set_num_threads(checked_threads(threads)); }); })
        .def("get_optimizer_state", &get_optimizer_state<T, L>)
        .def("set_optimizer_state", &set_optimizer_state<T, L>, "m"_a, "v"_a, "step"_a);
}

// The memory estimates of the supervised learners (the Python layer's checks before a run) and
// the bytes their buffers hold (which the tests hold the estimates to).
template <class T, class L>
void add_supervised_memory(py::class_<L>& cls) {
    cls.def("bytes_needed",
            [](const L& l, std::size_t meta_batch, const py::object& family, std::size_t rows, int num_threads) {
                std::optional<TaskShape> shape;
                if (!family.is_none()) shape = task_shape(family.cast<TaskFamily>());
                return l.bytes_needed(meta_batch, rows, shape ? &*shape : nullptr, checked_threads(num_threads));
            },
            "meta_batch"_a, "family"_a = py::none(), "rows"_a = 0, "num_threads"_a = 0,
            "Bytes a run of meta_batch tasks allocates: task slots, every thread's workspace for tasks of up to "
            "`rows` rows, and with a family the batch sampled from it (num_threads 0: the learner's).")
        .def("allocated_bytes",
             [](L& l) {
                 std::lock_guard<std::mutex> lock(l.mutex());
                 return l.allocated_bytes();
             },
             "Bytes the learner's buffers hold now.");
}

// Parameters stored as [theta, alpha] (Meta-SGD and its RL learner).
template <class T, class L>
void add_theta_alpha(py::class_<L>& cls) {
    cls.def("get_params", &get_theta_alpha<T, L>)
        .def("set_params", &set_theta_alpha<T, L>, "theta"_a, "alpha"_a = py::none());
}

// Evaluation and adaptation on task batches (the supervised learners).
template <class T, class L>
void add_supervised_methods(py::class_<L>& cls) {
    cls.def("evaluate", &evaluate_tasks<T, L>, "x_support"_a, "y_support"_a, "x_query"_a, "y_query"_a, "steps"_a)
        .def("adapt", &adapt_task<T, L>, "x_support"_a, "y_support"_a, "steps"_a);
}

}  // namespace metafast::bindings
