// A forest of the task tree as bytes, the one layout of both ways processes pass forests: a
// message between processes (PythonRelay) and a region of a machine's shared memory
// (MachineExchange). Words of 8 bytes: the number of nodes, the failure flag, then each node's
// first task, size and scores; the nodes' values follow, where the holder puts them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "metafast/task_tree.hpp"

namespace metafast::forest_bytes {

// Words of the header of a forest of `nodes` nodes.
constexpr std::size_t header_words(std::size_t nodes) { return 2 + (2 + tree_scores) * nodes; }

inline std::size_t count(const std::uint64_t* words) { return words[0]; }
inline bool failed(const std::uint64_t* words) { return words[1] != 0; }

template <class T>
void write_header(std::uint64_t* words, const TaskForest<T>& forest, bool failed) {
    words[0] = forest.size();
    words[1] = failed;
    for (std::size_t n = 0; n < forest.size(); ++n) {
        std::uint64_t* header = words + header_words(n);
        header[0] = forest[n].first;
        header[1] = forest[n].size;
        std::memcpy(header + 2, forest[n].scores.data(), sizeof(forest[n].scores));
    }
}

// Node n of the header, its values at `values`.
template <class T>
TreeNode<T> node(const std::uint64_t* words, std::size_t n, T* values) {
    const std::uint64_t* header = words + header_words(n);
    TreeNode<T> node{header[0], header[1], {}, values};
    std::memcpy(node.scores.data(), header + 2, sizeof(node.scores));
    return node;
}

}  // namespace metafast::forest_bytes
