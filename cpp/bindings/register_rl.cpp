// Binds the reinforcement-learning pieces: the 2D navigation environment and the Gaussian
// policy's surrogate loss, gradient and Hessian-vector product.
#include "arrays.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "metafast/nav2d.hpp"
#include "metafast/policy.hpp"

namespace metafast::bindings {
namespace {

// The arrays of a surrogate call: theta (num_params + action dims), states (rows, in),
// actions (rows, action dims) and weights (rows).
template <class T>
struct Samples {
    const T* theta;
    const T* states;
    const T* actions;
    const T* weights;
    std::size_t rows;
};

template <class T>
Samples<T> checked_samples(const Mlp& mlp, const py::array& theta, const py::array& states,
                           const py::array& actions, const py::array& weights) {
    require(mlp.output_activation() == Activation::identity,
            "the policy's mean network needs output activation 'identity'");
    const auto dims = static_cast<py::ssize_t>(mlp.output_width());
    std::vector<Dim> theta_dims{{static_cast<py::ssize_t>(mlp.num_params()) + dims, ""}};
    Samples<T> s{};
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
    const Samples<T> s = checked_samples<T>(mlp, theta, states, actions, weights);
    py::array_t<T> grad(static_cast<py::ssize_t>(mlp.num_params() + mlp.output_width()));
    T* g = grad.mutable_data();
    T value;
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        MlpWorkspace<T> ws;
        value = surrogate_loss_and_grad(mlp, s.theta, s.states, s.actions, s.weights, s.rows, ws, g);
    }
    return py::make_tuple(double(value), grad);
}

template <class T>
py::array_t<T> surrogate_hvp_impl(const Mlp& mlp, const py::array& theta, const py::array& states,
                                  const py::array& actions, const py::array& weights, const py::array& v) {
    const Samples<T> s = checked_samples<T>(mlp, theta, states, actions, weights);
    const std::size_t n = mlp.num_params() + mlp.output_width();
    std::vector<Dim> v_dims{{static_cast<py::ssize_t>(n), ""}};
    const T* direction = checked_data<T>(v, "v", v_dims);
    check_finite("v", direction, n);
    py::array_t<T> hv(static_cast<py::ssize_t>(n));
    T* out = hv.mutable_data();
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        MlpWorkspace<T> ws;
        surrogate_hvp(mlp, s.theta, s.states, s.actions, s.weights, s.rows, direction, ws, out);
    }
    return hv;
}

}  // namespace

void register_rl(py::module_& m) {
    py::class_<Navigation2D>(m, "Navigation2D")
        .def(py::init([](double goal_low, double goal_high, double max_action, double tolerance, std::size_t horizon,
                         bool squared) {
                 require(std::isfinite(goal_low) && std::isfinite(goal_high) && goal_low <= goal_high,
                         "goal_range must be a finite (low, high) pair with low <= high");
                 require(std::isfinite(max_action) && max_action > 0, "max_action must be a finite number > 0");
                 require(std::isfinite(tolerance) && tolerance >= 0, "tolerance must be a finite number >= 0");
                 require(horizon >= 1, "horizon must be at least 1");
                 return Navigation2D{goal_low, goal_high, max_action, tolerance, horizon, squared};
             }),
             "goal_low"_a, "goal_high"_a, "max_action"_a, "tolerance"_a, "horizon"_a, "squared"_a)
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
