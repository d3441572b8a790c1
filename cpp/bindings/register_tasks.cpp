// Binds the built-in task families and native sampling of a meta-batch.
#include "arrays.hpp"
#include "checks.hpp"

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metafast/parallel.hpp"
#include "metafast/task_batch.hpp"
#include "metafast/tasks.hpp"

namespace metafast::bindings {
namespace {

// The rows of a task's sets: support and query points (per class for N-way tasks).
std::size_t checked_rows(std::int64_t rows, const char* name) { return checked_count(rows, name, max_tasks); }

// A (low, high) range of finite numbers, low < high when strict.
void check_range(const char* name, double low, double high, bool strict) {
    require(std::isfinite(low) && std::isfinite(high) && (strict ? low < high : low <= high),
            std::string(name) + " must be a finite (low, high) pair with low " + (strict ? "<" : "<=") + " high, got (" +
                number_text(low) + ", " + number_text(high) + ")");
}

template <class T>
py::tuple sample_impl(const TaskFamily& family, std::size_t tasks, std::uint64_t seed,
                      std::uint64_t iteration, int num_threads) {
    const TaskShape s = task_shape(family);
    const auto t = static_cast<py::ssize_t>(tasks);
    const auto ks = static_cast<py::ssize_t>(s.support_rows), kq = static_cast<py::ssize_t>(s.query_rows);
    const auto in = static_cast<py::ssize_t>(s.input_width), out = static_cast<py::ssize_t>(s.output_width);
    py::array_t<T> x_support({t, ks, in}), x_query({t, kq, in});
    py::array y_support, y_query;
    if (s.has_labels) {
        y_support = py::array_t<std::int64_t>({t, ks});
        y_query = py::array_t<std::int64_t>({t, kq});
    } else {
        y_support = py::array_t<T>({t, ks, out});
        y_query = py::array_t<T>({t, kq, out});
    }
    T* xs = x_support.mutable_data();
    T* xq = x_query.mutable_data();
    void* ys = y_support.mutable_data();
    void* yq = y_query.mutable_data();
    {
        py::gil_scoped_release release;  // only raw pointers from here on
        const int team = ThreadBudget(num_threads).team(tasks, 0.0);
        std::vector<SampleScratch> scratch(static_cast<std::size_t>(team));
        parallel_for(tasks, team, [&](std::size_t i, int thread) {
            const TaskSlot<T> slot = slot_of(s, i, xs, static_cast<T*>(ys), static_cast<std::int64_t*>(ys), xq,
                                             static_cast<T*>(yq), static_cast<std::int64_t*>(yq));
            sample_task(family, seed, iteration, i, slot, scratch[static_cast<std::size_t>(thread)]);
        });
    }
    return py::make_tuple(x_support, y_support, x_query, y_query);
}

}  // namespace

void register_tasks(py::module_& m) {
    py::class_<Sinusoid>(m, "Sinusoid")
        .def(py::init([](double amplitude_low, double amplitude_high, double phase_low, double phase_high,
                         double x_low, double x_high, std::optional<std::int64_t> grid, std::int64_t phase_sign,
                         std::int64_t support, std::int64_t query) {
                 check_range("amplitude", amplitude_low, amplitude_high, false);
                 check_range("phase", phase_low, phase_high, false);
                 check_range("x_range", x_low, x_high, true);
                 require(!grid || (*grid >= 2 && *grid <= (std::int64_t{1} << 32)),
                         "grid must be None (continuous inputs) or a number of points in [2, 2^32], got " +
                             std::to_string(grid.value_or(0)));
                 require(phase_sign == 1 || phase_sign == -1,
                         "phase_sign must be -1 or +1, got " + std::to_string(phase_sign));
                 return Sinusoid{amplitude_low, amplitude_high, phase_low, phase_high, x_low, x_high,
                                 static_cast<std::size_t>(grid.value_or(0)), double(phase_sign),
                                 checked_rows(support, "support"), checked_rows(query, "query")};
             }),
             "amplitude_low"_a, "amplitude_high"_a, "phase_low"_a, "phase_high"_a, "x_low"_a,
             "x_high"_a, "grid"_a, "phase_sign"_a, "support"_a, "query"_a);

    py::class_<LinearBinary>(m, "LinearBinary")
        .def(py::init([](std::int64_t dim, std::int64_t support, std::int64_t query) {
                 return LinearBinary{checked_count(dim, "dim", max_tasks), checked_rows(support, "support"),
                                     checked_rows(query, "query")};
             }),
             "dim"_a, "support"_a, "query"_a);

    py::class_<SeedBinary>(m, "SeedBinary")
        .def(py::init([](std::int64_t dim, std::int64_t support, std::int64_t query) {
                 return SeedBinary{checked_count(dim, "dim", max_tasks), checked_rows(support, "support"),
                                   checked_rows(query, "query")};
             }),
             "dim"_a, "support"_a, "query"_a);

    py::class_<GaussianNWay>(m, "GaussianNWay")
        .def(py::init([](std::int64_t ways, std::int64_t dim, std::int64_t support, std::int64_t query,
                         double spread) {
                 require(ways >= 2 && ways <= std::int64_t{1} << 24,
                         "ways must lie in [2, 16777216], got " + std::to_string(ways));
                 require(std::isfinite(spread) && spread >= 0,
                         "spread must be a finite number >= 0, got " + number_text(spread));
                 return GaussianNWay{static_cast<std::size_t>(ways), checked_count(dim, "dim", max_tasks),
                                     checked_rows(support, "support"), checked_rows(query, "query"), spread};
             }),
             "ways"_a, "dim"_a, "support"_a, "query"_a, "spread"_a);

    m.def(
        "sample_tasks",
        [](const TaskFamily& family, std::size_t num_tasks, std::uint64_t seed, std::uint64_t iteration,
           const std::string& dtype, int num_threads) {
            require(num_tasks >= 1, "num_tasks must be at least 1");
            checked_threads(num_threads);
            if (dtype == "float32") return sample_impl<float>(family, num_tasks, seed, iteration, num_threads);
            if (dtype == "float64") return sample_impl<double>(family, num_tasks, seed, iteration, num_threads);
            throw py::type_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
        },
        "family"_a, "num_tasks"_a, "seed"_a, "iteration"_a = 0, "dtype"_a = "float64", "num_threads"_a = 0,
        "(x_support, y_support, x_query, y_query) of num_tasks tasks; task i is keyed by (seed, iteration, i).");

    m.def(
        "sample_bytes",
        [](const TaskFamily& family, std::size_t num_tasks, const std::string& dtype) {
            const TaskShape s = task_shape(family);
            if (dtype == "float32") return TaskBatchStorage<float>::bytes(s, num_tasks);
            if (dtype == "float64") return TaskBatchStorage<double>::bytes(s, num_tasks);
            throw py::type_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
        },
        "family"_a, "num_tasks"_a, "dtype"_a = "float64",
        "Bytes sample_tasks allocates for num_tasks tasks of the family in dtype (what memory checks use).");
}

}  // namespace metafast::bindings
