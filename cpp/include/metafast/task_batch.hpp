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
        const Sizes n = sizes(shape, tasks);
        grow(x_support_, n.x_support);
        grow(x_query_, n.x_query);
        grow(labels_support_, n.labels_support);
        grow(labels_query_, n.labels_query);
        grow(y_support_, n.y_support);
        grow(y_query_, n.y_query);
    }

    // Bytes reserve(shape, tasks) allocates in an empty storage.
    static std::size_t bytes(const TaskShape& shape, std::size_t tasks) {
        const Sizes n = sizes(shape, tasks);
        return (n.x_support + n.x_query + n.y_support + n.y_query) * sizeof(T) +
               (n.labels_support + n.labels_query) * sizeof(std::int64_t);
    }

    std::size_t allocated_bytes() const {
        return (x_support_.capacity() + x_query_.capacity() + y_support_.capacity() + y_query_.capacity()) * sizeof(T) +
               (labels_support_.capacity() + labels_query_.capacity()) * sizeof(std::int64_t);
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
    // Elements of each array for `tasks` tasks of `shape`: y or labels, whichever the shape has.
    struct Sizes {
        std::size_t x_support, x_query, y_support, y_query, labels_support, labels_query;
    };
    static Sizes sizes(const TaskShape& shape, std::size_t tasks) {
        const std::size_t ks = tasks * shape.support_rows, kq = tasks * shape.query_rows;
        const std::size_t out = shape.has_labels ? 0 : shape.output_width;
        return {ks * shape.input_width, kq * shape.input_width, ks * out, kq * out,
                shape.has_labels ? ks : 0, shape.has_labels ? kq : 0};
    }

    template <class Vector>
    static void grow(Vector& v, std::size_t n) {
        grow_exactly(v, n);
    }
    TaskShape shape_{};
    std::size_t tasks_ = 0;
    Buffer<T> x_support_, y_support_, x_query_, y_query_;
    std::vector<std::int64_t> labels_support_, labels_query_;
};

}  // namespace metafast
