// Views of a meta-batch of tasks (T tasks, each a support and a query set) over arrays laid
// out task-major, and storage for batches the core samples itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "metafast/buffer.hpp"
#include "metafast/losses.hpp"
#include "metafast/task_layout.hpp"

namespace metafast {

template <class T>
struct TaskView {
    const T* x_support;
    Targets<T> y_support;
    std::size_t support_rows;
    const T* x_query;
    Targets<T> y_query;
    std::size_t query_rows;
};

// x_support (tasks, support_rows, input_width), y_support (tasks, support_rows, output_width)
// or labels_support (tasks, support_rows); the same for the query sets.
template <class T>
struct TaskBatchView {
    std::size_t tasks = 0;
    TaskShape shape{};
    const T* x_support = nullptr;
    const T* y_support = nullptr;
    const std::int64_t* labels_support = nullptr;
    const T* x_query = nullptr;
    const T* y_query = nullptr;
    const std::int64_t* labels_query = nullptr;

    TaskView<T> task(std::size_t i) const {
        const TaskOffsets o = task_offsets(shape, i);
        TaskView<T> view{x_support + o.x_support, {}, shape.support_rows, x_query + o.x_query, {}, shape.query_rows};
        if (shape.has_labels) {
            view.y_support.labels = labels_support + o.labels_support;
            view.y_query.labels = labels_query + o.labels_query;
        } else {
            view.y_support.values = y_support + o.y_support;
            view.y_query.values = y_query + o.y_query;
        }
        return view;
    }
};

// Owns the arrays of a sampled batch; grows only, so re-sampling allocates nothing.
template <class T>
class TaskBatchStorage {
public:
    void reserve(const TaskShape& shape, std::size_t tasks) {
        shape_ = shape;
        tasks_ = tasks;
        const std::size_t ks = tasks * shape.support_rows, kq = tasks * shape.query_rows;
        grow(x_support_, ks * shape.input_width);
        grow(x_query_, kq * shape.input_width);
        if (shape.has_labels) {
            grow(labels_support_, ks);
            grow(labels_query_, kq);
        } else {
            grow(y_support_, ks * shape.output_width);
            grow(y_query_, kq * shape.output_width);
        }
    }

    TaskSlot<T> slot(std::size_t i) {
        return slot_of(shape_, i, x_support_.data(), y_support_.data(), labels_support_.data(), x_query_.data(),
                       y_query_.data(), labels_query_.data());
    }

    TaskBatchView<T> view() const {
        return {tasks_, shape_, x_support_.data(), y_support_.data(), labels_support_.data(),
                x_query_.data(), y_query_.data(), labels_query_.data()};
    }

private:
    template <class Vector>
    static void grow(Vector& v, std::size_t n) {
        if (v.size() < n) v.resize(n);
    }
    TaskShape shape_{};
    std::size_t tasks_ = 0;
    Buffer<T> x_support_, y_support_, x_query_, y_query_;
    std::vector<std::int64_t> labels_support_, labels_query_;
};

}  // namespace metafast
