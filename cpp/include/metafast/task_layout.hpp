// How a task's arrays are laid out: its shape, where a sampler writes it, and where task i of
// a batch stored task-major starts (said once, for the batch views, the batch storage and the
// samplers' bindings alike).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace metafast {

// The shape of a family's tasks.
struct TaskShape {
    std::size_t input_width, output_width, support_rows, query_rows;
    bool has_labels;
};

// Where one task's arrays go: x (rows x input_width), and either y (rows x output_width,
// regression and binary targets) or labels (rows, class indices).
template <class T>
struct TaskSlot {
    T* x_support;
    T* y_support;
    std::int64_t* labels_support;
    T* x_query;
    T* y_query;
    std::int64_t* labels_query;
};

// Per-thread memory a family reuses while it draws tasks: numbers, and picked indices (rows
// of a user's data set, classes of an episode).
struct SampleScratch {
    std::vector<double> values;
    std::vector<std::size_t> picks;

    // An upper bound of the bytes a family's sampler (tasks.hpp, data_tasks.hpp) keeps here
    // for tasks of `s`: numbers for at most a task's rows and one per input and output pair (a
    // class centre's), and picks (grown one at a time, so up to twice) of at most a task's
    // rows and classes.
    static std::size_t bytes(const TaskShape& s) {
        const std::size_t rows = s.support_rows + s.query_rows;
        return (rows * (s.input_width + s.output_width) + s.input_width * s.output_width) * sizeof(double) +
               2 * (rows + s.output_width) * sizeof(std::size_t);
    }

    std::size_t allocated_bytes() const {
        return values.capacity() * sizeof(double) + picks.capacity() * sizeof(std::size_t);
    }
};

// Element offsets of task i's arrays in a batch laid out task-major: x (tasks, rows, inputs),
// y (tasks, rows, outputs) or labels (tasks, rows), support sets and query sets apart.
struct TaskOffsets {
    std::size_t x_support, y_support, labels_support, x_query, y_query, labels_query;
};

inline TaskOffsets task_offsets(const TaskShape& s, std::size_t i) {
    const std::size_t ks = i * s.support_rows, kq = i * s.query_rows;
    return {ks * s.input_width, ks * s.output_width, ks, kq * s.input_width, kq * s.output_width, kq};
}

// Task i's slot in task-major arrays; y or labels, whichever the shape has (the other is null).
template <class T>
TaskSlot<T> slot_of(const TaskShape& s, std::size_t i, T* x_support, T* y_support, std::int64_t* labels_support,
                    T* x_query, T* y_query, std::int64_t* labels_query) {
    const TaskOffsets o = task_offsets(s, i);
    if (s.has_labels)
        return {x_support + o.x_support, nullptr, labels_support + o.labels_support,
                x_query + o.x_query, nullptr, labels_query + o.labels_query};
    return {x_support + o.x_support, y_support + o.y_support, nullptr, x_query + o.x_query, y_query + o.y_query, nullptr};
}

}  // namespace metafast
