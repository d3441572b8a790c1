// The fixed pairwise tree over a meta-batch's task indices that sums the tasks' slots and
// scores: the sum's bits depend on the number of tasks only, not on how the tasks are split
// between threads and processes (docs/math.md, "The sum over the tasks").
//
// For N tasks and P the least power of two >= N, node (a, s), a a multiple of s, sums tasks
// [a, min(a + s, N)): s = 1 is task a's slot; a node whose right half starts at or after N is
// its left half; any other node is its left half + its right half. The sum is node (0, P).
// A node is named by its largest size s for its tasks (`canonical`), so that two nodes are
// siblings exactly when they have the same size s, the left one starts at a multiple of 2s and
// the right one where the left one ends.
//
// A contiguous range of tasks reduces to its forest: the largest nodes inside it, in task order
// (at most 2 log2 N + 2 of them). Forests of adjacent ranges merge into their union's by adding
// siblings, left + right, and nothing else: a thread reduces its tasks to their forest, the
// last thread of a team merges the team's, and processes merge theirs in log2 R rounds
// (PythonRelay); the root is the same node, with the same bits, however the tasks were split.
//
// A node's values are stored in place, over the slot of its first task (or in a message
// received from another process): slots are scratch that only this sum reads.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <stdexcept>

#include "metafast/simd.hpp"

namespace metafast {

// How many double sums a node carries beside its values: the task score (the meta-iteration's
// loss or return), and for TRPO's line search the KL as well.
constexpr std::size_t tree_scores = 2;

template <class T>
struct TreeNode {
    std::size_t first, size;                 // node (first, size), size canonical
    std::array<double, tree_scores> scores;  // the sums of its tasks' scores
    T* values;                               // the sum of its tasks' slots (width values)
};

// A process's task slots: task `first + i` (the meta-batch's index) at values + i * stride,
// its scores at scores[j][i] (a null scores[j] counts as 0).
template <class T>
struct TaskSlots {
    T* values;
    std::size_t stride, width, first;
    std::array<const double*, tree_scores> scores;

    T* of(std::size_t task) const { return values + (task - first) * stride; }
    double score(std::size_t j, std::size_t task) const { return scores[j] ? scores[j][task - first] : 0.0; }
};

// Leaves at a node's bottom that are summed together in registers, one pass over their slots.
constexpr std::size_t tree_group = 8;

namespace tree_detail {

// The sum of leaves load(0 .. C - 1) as the subtree of size S over them (leaves from C on absent).
template <std::size_t S, std::size_t C, class Load>
auto pairwise(Load&& load, std::size_t offset = 0) {
    if constexpr (S == 1) {
        return load(offset);
    } else if constexpr (C <= S / 2) {
        return pairwise<S / 2, C>(load, offset);
    } else {
        return pairwise<S / 2, S / 2>(load, offset) + pairwise<S / 2, C - S / 2>(load, offset + S / 2);
    }
}

// into[k] = the group node of leaves `leaf[0 .. C - 1]` (pointers to their values) for every
// element k in [0, width); into may be leaf[0].
template <std::size_t C, class T>
void group_values(T* const* leaf, std::size_t width, T* into) {
    std::size_t k = 0;
#ifdef METAFAST_VECTOR_KERNELS
    using simd::load, simd::store, simd::wide;
    constexpr std::size_t L = simd::lanes<T, wide>, V = 4;  // V independent trees hide the adder's latency
    for (; k + V * L <= width; k += V * L) {
        simd::vec<T, wide> acc[V];
        METAFAST_UNROLL
        for (std::size_t v = 0; v < V; ++v)
            acc[v] = pairwise<tree_group, C>([&](std::size_t i) { return load<T, wide>(leaf[i] + k + v * L); });
        METAFAST_UNROLL
        for (std::size_t v = 0; v < V; ++v) store<T, wide>(into + k + v * L, acc[v]);
    }
    for (; k + L <= width; k += L)
        store<T, wide>(into + k, pairwise<tree_group, C>([&](std::size_t i) { return load<T, wide>(leaf[i] + k); }));
#endif
    for (; k < width; ++k) into[k] = pairwise<tree_group, C>([&](std::size_t i) { return leaf[i][k]; });
}

template <std::size_t C, class T>
void group_node(const TaskSlots<T>& slots, std::size_t first, TreeNode<T>& node) {
    T* leaf[C];
    for (std::size_t i = 0; i < C; ++i) leaf[i] = slots.of(first + i);
    group_values<C>(leaf, slots.width, leaf[0]);
    for (std::size_t j = 0; j < tree_scores; ++j)
        node.scores[j] = pairwise<tree_group, C>([&](std::size_t i) { return slots.score(j, first + i); });
    node.values = leaf[0];
}

}  // namespace tree_detail

// A forest being built in task order: nodes of adjacent task ranges, no two neighbours siblings.
template <class T>
class TaskForest {
public:
    // Nodes a forest can hold: the forest of a range and one more node while it merges in.
    static constexpr std::size_t capacity = 2 * 64 + 2;

    explicit TaskForest(std::size_t total = 1) { reset(total, 0); }

    // Empties the forest of a meta-batch of `total` tasks, its next task `next`.
    void reset(std::size_t total, std::size_t next) {
        total_ = std::max<std::size_t>(total, 1);
        top_ = 1;
        while (top_ < total_) top_ *= 2;
        count_ = 0;
        next_ = next;
    }

    std::size_t total() const { return total_; }
    std::size_t size() const { return count_; }
    const TreeNode<T>& operator[](std::size_t i) const { return nodes_[i]; }
    TreeNode<T>& operator[](std::size_t i) { return nodes_[i]; }
    // The first task after the forest's.
    std::size_t next() const { return next_; }

    // The largest size of a node that starts at task `first` and holds the tasks of node
    // (first, size).
    std::size_t canonical(std::size_t first, std::size_t size) const {
        while (size < top_ && first % (2 * size) == 0 && first + size >= total_) size *= 2;
        return size;
    }

    // Appends a node that starts at next(), adding it to its left sibling (and so on up) while
    // there is one: the left node's values become the sum.
    void push(const TreeNode<T>& node, std::size_t width) {
        if (count_ == capacity) throw std::logic_error("a task forest outgrew its capacity");
        nodes_[count_++] = node;
        next_ = std::min(node.first + node.size, total_);
        while (count_ >= 2) {
            TreeNode<T>& left = nodes_[count_ - 2];
            const TreeNode<T>& right = nodes_[count_ - 1];
            if (left.size != right.size || left.first % (2 * left.size) != 0 || right.first != left.first + left.size)
                break;
            for (std::size_t k = 0; k < width; ++k) left.values[k] = left.values[k] + right.values[k];
            for (std::size_t j = 0; j < tree_scores; ++j) left.scores[j] += right.scores[j];
            left.size = canonical(left.first, 2 * left.size);
            --count_;
        }
    }

    // Adds this process's tasks next() .. done - 1 (done <= last, the end of the range being
    // reduced) to the forest. A group of tree_group leaves aligned on the tree (or the
    // meta-batch's last, shorter one) inside [next(), last) waits until all its tasks are done
    // and then is summed in one pass; other tasks are added one at a time.
    void reduce(const TaskSlots<T>& slots, std::size_t done, std::size_t last) {
        while (next_ < done) {
            const std::size_t a = next_, group_end = std::min(a + tree_group, total_);
            TreeNode<T> node{};
            if (a % tree_group == 0 && group_end <= last && group_end - a > 1) {
                if (group_end > done) break;
                group(slots, a, group_end - a, node);
                node.size = canonical(a, std::min(tree_group, top_));
            } else {
                for (std::size_t j = 0; j < tree_scores; ++j) node.scores[j] = slots.score(j, a);
                node.values = slots.of(a);
                node.size = canonical(a, 1);
            }
            node.first = a;
            push(node, slots.width);
        }
    }

    // The forest of tasks [first, last) without sums (values at their first tasks' slots,
    // scores 0): what a process whose share failed still passes on, for the messages' shapes.
    void cover(const TaskSlots<T>& slots, std::size_t first, std::size_t last) {
        reset(total_, first);
        for (std::size_t a = first; a < last;) {
            std::size_t s = 1;
            while (s < top_ && a % (2 * s) == 0 && std::min(a + 2 * s, total_) <= last) s *= 2;
            nodes_[count_++] = TreeNode<T>{a, s, {}, last > a ? slots.of(a) : nullptr};
            a = std::min(a + s, total_);
        }
        next_ = last;
    }

    // The number of nodes of the forest of tasks [first, last) of `total`.
    static std::size_t nodes_of(std::size_t first, std::size_t last, std::size_t total) {
        TaskForest shape(total);
        shape.cover(TaskSlots<T>{nullptr, 0, 0, first, {}}, first, last);
        return shape.size();
    }

private:
    static void group(const TaskSlots<T>& slots, std::size_t a, std::size_t count, TreeNode<T>& node) {
        using tree_detail::group_node;
        switch (count) {  // 2 .. tree_group
            case 2: return group_node<2>(slots, a, node);
            case 3: return group_node<3>(slots, a, node);
            case 4: return group_node<4>(slots, a, node);
            case 5: return group_node<5>(slots, a, node);
            case 6: return group_node<6>(slots, a, node);
            case 7: return group_node<7>(slots, a, node);
            default: return group_node<8>(slots, a, node);
        }
    }

    std::array<TreeNode<T>, capacity> nodes_;
    std::size_t count_ = 0, total_ = 1, top_ = 1, next_ = 0;
};

}  // namespace metafast
