// Binds the reinforcement-learning pieces: the 2D navigation environment and the Gaussian
// policy's surrogate loss, gradient and Hessian-vector product.
#include "learner_support.hpp"

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metafast/nav2d.hpp"
#include "metafast/policy.hpp"
#include "metafast/rl_learner.hpp"

namespace metafast::bindings {
namespace {

// The arrays of a surrogate call: theta (num_params + action dims), states (rows, in),
// actions (rows, action dims) and weights (rows).
template <class T>
struct SurrogateArrays {
    const T* theta;
    const T* states;
    const T* actions;
    const T* weights;
    std::size_t rows;
};

template <class T>
SurrogateArrays<T> checked_samples(const Mlp& mlp, const py::array& theta, const py::array& states,
                           const py::array& actions, const py::array& weights) {
    require(mlp.output_activation() == Activation::identity,
            "the policy's mean network needs output activation 'identity'");
    const auto dims = static_cast<py::ssize_t>(mlp.output_width());
    std::vector<Dim> theta_dims{{static_cast<py::ssize_t>(mlp.num_params()) + dims, ""}};
    SurrogateArrays<T> s{};
    s.theta = checked_data<T>(theta, "theta", theta_dims);
    check_finite("theta", s.theta, element_count(theta_dims));
    std::vector<Dim> state_dims{{-1, "rows"}, {static_cast<py::ssize_t>(mlp.input_width()), ""}};
    s.states = checked_data<T>(states, "states", state_dims);
    const py::ssize_t rows = state_dims[0].size;
    check_finite("states", s.states, element_count(state_dims));
    std::vector<Dim> action_dims{{rows, ""}, {dims, ""}};
    s.actions = checked_data<T>(actions, "actions", action_dims);
    check_finite("actions", s.actions, element_count(action_dims));
    std::vector<Dim> weight_dims{{rows, ""}};
    s.weights = checked_data<T>(weights, "weights", weight_dims);
    check_finite("weights", s.weights, element_count(weight_dims));
    s.rows = static_cast<std::size_t>(rows);
    return s;
}

template <class T>
py::tuple surrogate_impl(const Mlp& mlp, const py::array& theta, const py::array& states, const py::array& actions,
                         const py::array& weights) {
    const SurrogateArrays<T> s = checked_samples<T>(mlp, theta, states, actions, weights);
    py::array_t<T> grad(static_cast<py::ssize_t>(mlp.num_params() + mlp.output_width()));
    T* g = grad.mutable_data();
    T value;
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
        MlpWorkspace<T> ws;
        value = surrogate_loss_and_grad(mlp, s.theta, s.states, s.actions, s.weights, s.rows, ws, g);
    }
    return py::make_tuple(double(value), grad);
}

template <class T>
py::array_t<T> surrogate_hvp_impl(const Mlp& mlp, const py::array& theta, const py::array& states,
                                  const py::array& actions, const py::array& weights, const py::array& v) {
    const SurrogateArrays<T> s = checked_samples<T>(mlp, theta, states, actions, weights);
    const std::size_t n = mlp.num_params() + mlp.output_width();
    std::vector<Dim> v_dims{{static_cast<py::ssize_t>(n), ""}};
    const T* direction = checked_data<T>(v, "v", v_dims);
    check_finite("v", direction, n);
    py::array_t<T> hv(static_cast<py::ssize_t>(n));
    T* out = hv.mutable_data();
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        [[maybe_unused]] const FlushDenormals flush;  // as everywhere in the core
        MlpWorkspace<T> ws;
        surrogate_hvp(mlp, s.theta, s.states, s.actions, s.weights, s.rows, direction, ws, out);
    }
    return hv;
}


template <class T>
py::tuple samples_out(const Samples<T>& s) {
    const auto rows = static_cast<py::ssize_t>(s.rows);
    py::array_t<T> states({rows, py::ssize_t{2}}), actions({rows, py::ssize_t{2}}), weights(rows);
    std::copy(s.states.begin(), s.states.begin() + 2 * s.rows, states.mutable_data());
    std::copy(s.actions.begin(), s.actions.begin() + 2 * s.rows, actions.mutable_data());
    std::copy(s.weights.begin(), s.weights.begin() + s.rows, weights.mutable_data());
    return py::make_tuple(states, actions, weights, s.mean_return);
}

// The RL learner's hyperparameters, checked (for the native learner and the Python path alike).
struct RlSettings {
    RlConfig rollouts;
    OptimizerConfig optimizer;
};

// meta_optimizer "trpo" keeps Adam's settings (checked, unused) beside TRPO's.
RlSettings checked_rl_settings(std::int64_t trajectories, double gamma, bool first_order, bool normalize_advantages,
                               const std::string& optimizer, double lr, double beta1, double beta2, double eps) {
    require(optimizer == "adam" || optimizer == "sgd" || optimizer == "trpo",
            "meta_optimizer must be 'adam', 'sgd' or 'trpo', got '" + optimizer + "'");
    return {{checked_count(trajectories, "inner_trajectories", std::size_t{1} << 16), checked_within(gamma, "gamma", 0, 1),
             first_order, normalize_advantages},
            checked_optimizer(optimizer == "trpo" ? "adam" : optimizer, "meta_optimizer", lr, "meta_lr", beta1, beta2, eps)};
}

// The RL learner's alpha_lr: 0 keeps alpha fixed (MAML's fixed inner step).
double checked_alpha_lr(double alpha_lr) {
    require(std::isfinite(alpha_lr) && alpha_lr >= 0,
            "alpha_lr must be a finite number >= 0 (0: alpha fixed), got " + number_text(alpha_lr));
    return alpha_lr;
}

TrpoConfig checked_trpo(double max_kl, std::int64_t cg_iterations, double cg_damping, std::int64_t line_search_steps,
                        double line_search_ratio) {
    return {checked_positive(max_kl, "max_kl"), checked_count(cg_iterations, "cg_iterations", 1000),
            checked_within(cg_damping, "cg_damping", 0, 1e6), checked_count(line_search_steps, "line_search_steps", 1000),
            checked_within(line_search_ratio, "line_search_ratio", 0, 1, true)};
}

// The adaptation schedule of evaluate and adapt: `inner_trajectories` per step (0: the
// learner's), alpha scaled per step by `alpha_scales` (finite, >= 0; the last repeats).
template <class L>
AdaptationSchedule checked_schedule(const L& l, std::int64_t inner_trajectories, const std::vector<double>& alpha_scales) {
    require(!alpha_scales.empty() && alpha_scales.size() <= 10000,
            "alpha_scales must hold 1 to 10,000 factors, got " + std::to_string(alpha_scales.size()));
    for (double scale : alpha_scales)
        require(std::isfinite(scale) && scale >= 0, "alpha_scales must be finite numbers >= 0, got " + number_text(scale));
    const std::size_t trajectories = inner_trajectories == 0 ? l.config().trajectories
                                                             : checked_count(inner_trajectories, "inner_trajectories",
                                                                             std::size_t{1} << 16);
    return {trajectories, alpha_scales};
}

// [theta, alpha]'s width once trpo_prepare has run.
template <class L>
std::size_t trpo_prepared_width(const L& l) {
    require(l.trpo().has_value() && l.trpo_prepared_tasks() > 0, "call trpo_prepare first (meta_optimizer='trpo')");
    return 2 * l.policy_params();
}

template <class T>
void bind_rl_learner(py::module_& m, const char* name) {
    using Learner = MetaSgdRlLearner<T>;
    py::class_<Learner> cls(m, name);
    cls.def(py::init([](const Mlp& mlp, const Navigation2D& env, std::int64_t trajectories, double gamma,
                        bool first_order, bool normalize_advantages, const std::string& optimizer, double lr,
                        double beta1, double beta2, double eps, std::uint64_t seed, int num_threads,
                        std::optional<double> alpha_lr, std::int64_t inner_steps, double gae_lambda, double max_kl,
                        std::int64_t cg_iterations, double cg_damping, std::int64_t line_search_steps,
                        double line_search_ratio) {
                require(mlp.input_width() == 2 && mlp.output_width() == 2,
                        "the policy network must map 2 inputs (the position) to 2 outputs (the mean action)");
                require(mlp.output_activation() == Activation::identity,
                        "the policy's mean network needs output activation 'identity'");
                RlSettings settings = checked_rl_settings(trajectories, gamma, first_order, normalize_advantages,
                                                          optimizer, lr, beta1, beta2, eps);
                settings.optimizer.tail_lr = alpha_lr ? checked_alpha_lr(*alpha_lr) : lr;
                settings.rollouts.inner_steps = checked_count(inner_steps, "inner_steps", 100);
                settings.rollouts.gae_lambda = checked_within(gae_lambda, "gae_lambda", 0, 1);
                const TrpoConfig trpo = checked_trpo(max_kl, cg_iterations, cg_damping, line_search_steps,
                                                     line_search_ratio);
                return std::make_unique<Learner>(mlp, env, settings.rollouts, settings.optimizer, seed,
                                                 checked_threads(num_threads),
                                                 optimizer == "trpo" ? std::optional<TrpoConfig>(trpo) : std::nullopt);
            }),
            "mlp"_a, "env"_a, "trajectories"_a, "gamma"_a, "first_order"_a, "normalize_advantages"_a,
            "meta_optimizer"_a, "meta_lr"_a, "beta1"_a, "beta2"_a, "eps"_a, "seed"_a, "num_threads"_a,
            "alpha_lr"_a = py::none(), "inner_steps"_a = 1, "gae_lambda"_a = 1.0, "max_kl"_a = 0.01,
            "cg_iterations"_a = 10, "cg_damping"_a = 1e-5, "line_search_steps"_a = 15, "line_search_ratio"_a = 0.8);
    add_learner_methods<T>(cls);
    add_theta_alpha<T>(cls);
    cls.def_static("learner_bytes", &Learner::learner_bytes, "policy_params"_a,
                   "Bytes a learner of a policy of policy_params parameters (the network's and log_std) keeps for "
                   "its life.")
        .def("bytes_needed",
             [](const Learner& l, std::size_t meta_batch, std::int64_t trajectories, int num_threads) {
                 return l.bytes_needed(meta_batch, checked_count(trajectories, "trajectories", std::size_t{1} << 16),
                                       checked_threads(num_threads));
             },
             "meta_batch"_a, "trajectories"_a, "num_threads"_a = 0,
             "Bytes a run of meta_batch tasks (0: an evaluation) with rollouts of `trajectories` trajectories "
             "allocates: task slots and every thread's rollout workspace (num_threads 0: the learner's).")
        .def_static("training_bytes",
                    [](const Mlp& mlp, std::int64_t horizon, std::int64_t inner_steps, std::size_t meta_batch,
                       std::int64_t trajectories, int num_threads, bool trpo) {
                        return Learner::training_bytes(
                            mlp, checked_count(horizon, "horizon", std::size_t{1} << 24),
                            checked_count(inner_steps, "inner_steps", 100), meta_batch,
                            checked_count(trajectories, "trajectories", std::size_t{1} << 16),
                            resolve_threads(checked_threads(num_threads)), trpo);
                    },
                    "mlp"_a, "horizon"_a, "inner_steps"_a, "meta_batch"_a, "trajectories"_a, "num_threads"_a,
                    "trpo"_a = false,
                    "bytes_needed for a policy network `mlp` and episodes of up to `horizon` steps, whoever "
                    "collects the rollouts.")
        .def("allocated_bytes",
             [](Learner& l) {
                 std::lock_guard<std::mutex> lock(l.mutex());
                 return l.allocated_bytes();
             },
             "Bytes the learner's buffers hold now.");
    cls.def("fit",
            [](Learner& l, std::uint64_t first_iteration, std::size_t iterations, std::int64_t meta_batch,
               const py::object& relay, std::size_t first_task, std::size_t total_tasks) {
                const std::size_t tasks = checked_share(meta_batch, relay);
                return fit_in_core<T>(l, iterations, relay, first_task, total_tasks, tasks, [&](double* returns, auto& combine) {
                    return l.trpo() ? l.fit_trpo(first_iteration, iterations, tasks, returns, combine)
                                    : l.fit(first_iteration, iterations, tasks, returns, combine);
                });
            },
            "first_iteration"_a, "iterations"_a, "meta_batch"_a, "relay"_a = py::none(), "first_task"_a = 0,
            "total_tasks"_a = 0)
        // TRPO's parts, for checking the maths (in one process): prepare a meta-iteration's
        // tasks, then products, values, the direction and the line search on them.
        .def("trpo_prepare",
             [](Learner& l, std::uint64_t iteration, std::int64_t meta_batch) {
                 require(l.trpo().has_value(), "trpo_prepare needs meta_optimizer='trpo'");
                 const std::size_t tasks = checked_count(meta_batch, "meta_batch", max_tasks);
                 double score = 0.0;
                 LocalSum<T> alone;
                 interruptible([&] { without_gil(l, [&] { score = l.trpo_prepare(iteration, tasks, l.num_threads(), alone); }); });
                 return py::make_tuple(score, py::array_t<double>(static_cast<py::ssize_t>(2 * l.policy_params()),
                                                                  l.trpo_gradient().data()));
             },
             "iteration"_a, "meta_batch"_a)
        .def("trpo_fisher_product",
             [](Learner& l, const py::array& v) {
                 const std::size_t width = trpo_prepared_width(l);
                 std::vector<Dim> dims{{static_cast<py::ssize_t>(width), ""}};
                 const double* vp = checked_data<double>(v, "v", dims);
                 check_finite("v", vp, width);
                 py::array_t<double> out(static_cast<py::ssize_t>(width));
                 double* op = out.mutable_data();
                 LocalSum<T> alone;
                 interruptible([&] { without_gil(l, [&] { l.trpo_fisher_times(vp, op, l.num_threads(), alone); }); });
                 return out;
             },
             "v"_a)
        .def("trpo_surrogate_and_kl",
             [](Learner& l, const py::array& z) {
                 const std::size_t width = trpo_prepared_width(l);
                 std::vector<Dim> dims{{static_cast<py::ssize_t>(width), ""}};
                 const T* zp = checked_data<T>(z, "z", dims);
                 check_finite("z", zp, width);
                 SurrogateAndKl values{};
                 LocalSum<T> alone;
                 interruptible([&] { without_gil(l, [&] { values = l.trpo_surrogate_and_kl(zp, l.num_threads(), alone); }); });
                 return py::make_tuple(values.surrogate, values.kl);
             },
             "z"_a)
        .def("trpo_direction",
             [](Learner& l) {
                 const std::size_t width = trpo_prepared_width(l);
                 LocalSum<T> alone;
                 interruptible([&] { without_gil(l, [&] { l.trpo_direction(l.num_threads(), alone); }); });
                 return py::array_t<double>(static_cast<py::ssize_t>(width), l.trpo_x().data());
             })
        .def("trpo_line_search",
             [](Learner& l) {
                 trpo_prepared_width(l);
                 bool taken = false;
                 LocalSum<T> alone;
                 interruptible([&] { without_gil(l, [&] { taken = l.trpo_line_search(l.num_threads(), alone); }); });
                 return taken;
             })
        .def("evaluate",
             [](Learner& l, std::uint64_t seed, std::size_t num_tasks, const std::vector<std::size_t>& steps,
                std::int64_t requested_trajectories, std::int64_t inner_trajectories, const std::vector<double>& alpha_scales) {
                 checked_count(num_tasks, "num_tasks", max_tasks);
                 const std::size_t trajectories =
                     checked_count(requested_trajectories, "trajectories", std::size_t{1} << 16);
                 check_steps(steps);
                 const AdaptationSchedule schedule = checked_schedule(l, inner_trajectories, alpha_scales);
                 py::array_t<double> returns({static_cast<py::ssize_t>(num_tasks), static_cast<py::ssize_t>(steps.size())});
                 double* out = returns.mutable_data();
                 interruptible([&] { without_gil(l, [&] { l.evaluate(seed, num_tasks, steps, trajectories, schedule, out); }); });
                 return returns;
             },
             "seed"_a, "num_tasks"_a, "steps"_a, "trajectories"_a, "inner_trajectories"_a = 0,
             "alpha_scales"_a = std::vector<double>{1.0})
        .def("adapt",
             [](Learner& l, const py::array& goal, std::size_t steps, std::uint64_t seed, std::uint64_t iteration,
                std::int64_t inner_trajectories, const std::vector<double>& alpha_scales) {
                 std::vector<Dim> dims{{2, ""}};
                 const double* g = checked_data<double>(goal, "goal", dims);
                 check_finite("goal", g, 2);
                 const AdaptationSchedule schedule = checked_schedule(l, inner_trajectories, alpha_scales);
                 py::array_t<T> out(static_cast<py::ssize_t>(l.policy_params()));
                 T* op = out.mutable_data();
                 interruptible([&] { without_gil(l, [&] { l.adapt(g, steps, seed, iteration, schedule, op); }); });
                 return out;
             },
             "goal"_a, "steps"_a, "seed"_a, "iteration"_a, "inner_trajectories"_a = 0,
             "alpha_scales"_a = std::vector<double>{1.0})
        .def("task_meta_gradient",
             [](Learner& l, const Navigation2D& env, std::size_t trajectories, double gamma, bool first_order,
                bool normalize_advantages, std::uint64_t seed, std::uint64_t iteration, std::uint64_t task,
                std::size_t inner_steps, double gae_lambda) {
                 // One task's meta-gradient with the samples it used, for checking the maths:
                 // (score, g_theta, g_alpha, [samples of each inner step], samples after them).
                 const std::size_t q = l.policy_params();
                 RlWorkspace<T> ws;
                 py::array_t<T> g_theta(static_cast<py::ssize_t>(q)), g_alpha(static_cast<py::ssize_t>(q));
                 CounterRng rng(seed, iteration, task);
                 double goal[2];
                 env.sample_goal(rng, goal);
                 require(inner_steps >= 1 && inner_steps <= 100, "inner_steps must be in [1, 100]");
                 const RlConfig config{trajectories, gamma, first_order, normalize_advantages, inner_steps,
                                       checked_within(gae_lambda, "gae_lambda", 0, 1)};
                 const double score = rl_task_meta_gradient(l.mlp(), env, config, l.params().data(),
                                                            l.params().data() + q, goal, rng, ws, ws.trace,
                                                            g_theta.mutable_data(), g_alpha.mutable_data());
                 py::list steps;
                 for (const Samples<T>& s : ws.trace.steps) steps.append(samples_out(s));
                 return py::make_tuple(score, g_theta, g_alpha, steps, samples_out(ws.trace.valid));
             },
             "env"_a, "trajectories"_a, "gamma"_a, "first_order"_a, "normalize_advantages"_a, "seed"_a, "iteration"_a,
             "task"_a, "inner_steps"_a = 1, "gae_lambda"_a = 1.0);
}

}  // namespace

void register_rl(py::module_& m) {
    m.def(
        "check_rl_settings",
        [](std::int64_t trajectories, double gamma, const std::string& optimizer, double lr, double beta1,
           double beta2, double eps, std::int64_t inner_steps, double gae_lambda, std::optional<double> alpha_lr) {
            checked_rl_settings(trajectories, gamma, false, false, optimizer, lr, beta1, beta2, eps);
            checked_count(inner_steps, "inner_steps", 100);
            checked_within(gae_lambda, "gae_lambda", 0, 1);
            if (alpha_lr) checked_alpha_lr(*alpha_lr);
        },
        "trajectories"_a, "gamma"_a, "meta_optimizer"_a, "meta_lr"_a, "beta1"_a, "beta2"_a, "eps"_a,
        "inner_steps"_a = 1, "gae_lambda"_a = 1.0, "alpha_lr"_a = py::none(),
        "Raises ValueError, as the RL learners' constructors do, for settings out of range.");
    m.def(
        "trpo_step_accepted",
        [](double surrogate_before, double surrogate, double kl, double max_kl) {
            return trpo_step_accepted(surrogate_before, SurrogateAndKl{surrogate, kl}, max_kl);
        },
        "surrogate_before"_a, "surrogate"_a, "kl"_a, "max_kl"_a,
        "TRPO's line-search test: the step's surrogate and mean KL are finite, the surrogate is below "
        "surrogate_before and the KL within max_kl.");
    bind_rl_learner<float>(m, "MetaSGDRLFloat32");
    bind_rl_learner<double>(m, "MetaSGDRLFloat64");

    py::class_<Navigation2D>(m, "Navigation2D")
        .def(py::init([](double goal_low, double goal_high, double max_action, double tolerance, std::int64_t horizon,
                         bool squared, bool scaled_actions) {
                 require(std::isfinite(goal_low) && std::isfinite(goal_high) && goal_low <= goal_high,
                         "goal_range must be a finite (low, high) pair with low <= high, got (" + number_text(goal_low) +
                             ", " + number_text(goal_high) + ")");
                 require(std::isfinite(tolerance) && tolerance >= 0,
                         "tolerance must be a finite number >= 0, got " + number_text(tolerance));
                 return Navigation2D{goal_low, goal_high, checked_positive(max_action, "max_action"), tolerance,
                                     checked_count(horizon, "horizon", std::size_t{1} << 24), squared, scaled_actions};
             }),
             "goal_low"_a, "goal_high"_a, "max_action"_a, "tolerance"_a, "horizon"_a, "squared"_a,
             "scaled_actions"_a)
        .def("step",
             [](const Navigation2D& env, const py::array& positions, const py::array& actions, const py::array& goals) {
                 std::vector<Dim> dims{{-1, "n"}, {2, ""}};
                 const double* p = checked_data<double>(positions, "positions", dims);
                 const auto n = dims[0].size;
                 std::vector<Dim> same{{n, ""}, {2, ""}}, same2{{n, ""}, {2, ""}};
                 const double* a = checked_data<double>(actions, "actions", same);
                 const double* g = checked_data<double>(goals, "goals", same2);
                 check_finite("positions", p, static_cast<std::size_t>(2 * n));
                 check_finite("actions", a, static_cast<std::size_t>(2 * n));
                 check_finite("goals", g, static_cast<std::size_t>(2 * n));
                 py::array_t<double> moved({n, py::ssize_t{2}}), rewards(n);
                 py::array_t<bool> done(n);
                 double* mp = moved.mutable_data();
                 std::copy(p, p + 2 * n, mp);
                 for (py::ssize_t i = 0; i < n; ++i) {
                     bool reached = false;
                     rewards.mutable_data()[i] = env.step(mp + 2 * i, a + 2 * i, g + 2 * i, reached);
                     done.mutable_data()[i] = reached;
                 }
                 return py::make_tuple(moved, rewards, done);
             },
             "positions"_a, "actions"_a, "goals"_a)
        .def("sample_goals",
             [](const Navigation2D& env, std::size_t num_tasks, std::uint64_t seed, std::uint64_t iteration) {
                 require(num_tasks >= 1, "num_tasks must be at least 1");
                 py::array_t<double> goals({static_cast<py::ssize_t>(num_tasks), py::ssize_t{2}});
                 for (std::size_t i = 0; i < num_tasks; ++i) {
                     CounterRng rng(seed, iteration, i);
                     env.sample_goal(rng, goals.mutable_data() + 2 * i);
                 }
                 return goals;
             },
             "num_tasks"_a, "seed"_a, "iteration"_a);

    m.def("policy_surrogate",
          [](const Mlp& mlp, const py::array& theta, const py::array& states, const py::array& actions,
             const py::array& weights) {
              return dispatch_dtype(theta, "theta", [&](auto t) {
                  return surrogate_impl<decltype(t)>(mlp, theta, states, actions, weights);
              });
          },
          "mlp"_a, "theta"_a, "states"_a, "actions"_a, "weights"_a,
          "(loss, grad) of -sum_t weights_t log pi(actions_t | states_t) for a Gaussian policy.");
    m.def("policy_surrogate_hvp",
          [](const Mlp& mlp, const py::array& theta, const py::array& states, const py::array& actions,
             const py::array& weights, const py::array& v) -> py::array {
              return dispatch_dtype(theta, "theta", [&](auto t) {
                  return py::array(surrogate_hvp_impl<decltype(t)>(mlp, theta, states, actions, weights, v));
              });
          },
          "mlp"_a, "theta"_a, "states"_a, "actions"_a, "weights"_a, "v"_a);
}

}  // namespace metafast::bindings
