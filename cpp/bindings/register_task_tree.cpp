// Bindings of the task tree's sum (task_tree.hpp) on its own, for the tests: the sum of rows of
// an array when its tasks are split into parts reduced one by one and their forests merged
// in either of the groupings that threads and processes use; and the one call the distributed
// layer makes on a machine's exchange (machine_exchange.hpp) itself: leaving it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "metafast/buffer.hpp"
#include "metafast/denormals.hpp"
#include "metafast/machine_exchange.hpp"
#include "metafast/task_tree.hpp"
#include "pybind11.hpp"

namespace metafast::bindings {
namespace {

// (the sum of the rows of values, the sum of scores): tasks [bounds[p], bounds[p + 1]) form
// part p; "team" merges the parts' forests into the first in order (a team's threads),
// "processes" in log2 parts rounds (PythonRelay's).
template <class T>
py::tuple tree_sum(const py::array& values_array, const py::array& scores_array, const std::vector<std::size_t>& bounds,
                   const std::string& merge) {
    std::vector<Dim> dims{{-1, "tasks"}, {-1, "width"}};
    const T* values = checked_data<T>(values_array, "values", dims);
    const std::size_t tasks = static_cast<std::size_t>(dims[0].size), width = static_cast<std::size_t>(dims[1].size);
    std::vector<Dim> score_dims{{dims[0].size, "tasks"}};
    const double* scores = checked_data<double>(scores_array, "scores", score_dims);
    require(bounds.size() >= 2 && bounds.front() == 0 && bounds.back() == tasks,
            "bounds must run from 0 to the number of tasks, " + std::to_string(tasks));
    for (std::size_t p = 0; p + 1 < bounds.size(); ++p)
        require(bounds[p] <= bounds[p + 1], "bounds must not decrease");
    require(merge == "team" || merge == "processes", "merge must be 'team' or 'processes', got '" + merge + "'");
    const std::size_t parts = bounds.size() - 1, stride = cache_line_stride<T>(width);
    Buffer<T> slots(tasks * stride);
    for (std::size_t i = 0; i < tasks; ++i) std::copy(values + i * width, values + (i + 1) * width, slots.data() + i * stride);
    const TaskSlots<T> leaves{slots.data(), stride, width, 0, {scores, nullptr}};
    std::vector<TaskForest<T>> forests(parts, TaskForest<T>(tasks));
    {
        py::gil_scoped_release release;
        const FlushDenormals flush;  // as in the learners' runs
        for (std::size_t p = 0; p < parts; ++p) {
            forests[p].reset(tasks, bounds[p]);
            for (std::size_t done = bounds[p] + 1; done <= bounds[p + 1]; ++done)  // as tasks finish
                forests[p].reduce(leaves, done, bounds[p + 1]);
        }
        if (merge == "team") {
            for (std::size_t p = 1; p < parts; ++p)
                for (std::size_t n = 0; n < forests[p].size(); ++n) forests[0].push(forests[p][n], width);
        } else {
            for (std::size_t step = 1; step < parts; step *= 2)
                for (std::size_t p = 0; p + step < parts; p += 2 * step)
                    for (std::size_t n = 0; n < forests[p + step].size(); ++n)
                        forests[p].push(forests[p + step][n], width);
        }
    }
    require(forests[0].size() == 1, "the parts did not reduce to the root");
    const TreeNode<T>& root = forests[0][0];
    py::array_t<T> sum(static_cast<py::ssize_t>(width));
    std::copy(root.values, root.values + width, sum.mutable_data());
    return py::make_tuple(sum, root.scores[0]);
}

}  // namespace

void register_task_tree(py::module_& m) {
    m.def(
        "tree_sum",
        [](const py::array& values, const py::array& scores, const std::vector<std::size_t>& bounds,
           const std::string& merge) {
            if (py::isinstance<py::array_t<double>>(values)) return tree_sum<double>(values, scores, bounds, merge);
            return tree_sum<float>(values, scores, bounds, merge);
        },
        "values"_a, "scores"_a, "bounds"_a, "merge"_a = "team",
        "(sum of the rows of values, sum of scores) over the task tree, the tasks split at bounds (tests only).");
    m.attr("machine_control_bytes") = sizeof(MachineControl);  // where a machine's exchange keeps its counters
    m.def(
        "leave_machine_exchange",
        [](py::array_t<std::uint8_t, py::array::c_style> segment) {
            require(segment.writeable() && static_cast<std::size_t>(segment.size()) >= sizeof(MachineControl) &&
                        reinterpret_cast<std::uintptr_t>(segment.data()) % alignof(MachineControl) == 0,
                    "segment must be a machine exchange's writeable, aligned shared memory");
            leave_exchange(segment.mutable_data(), exchange_failed);
        },
        "segment"_a,
        "Marks a machine's exchange broken by an error of this process outside it: the processes waiting there "
        "stop within a tenth of a second, their shares failed elsewhere.");
}

}  // namespace metafast::bindings
