// The combination of the task forests of a distributed run's processes on one machine, through
// memory they share (an MPI shared-memory window the Python layer allocates): no message, no
// Python and no MPI call per meta-iteration. Each process writes its forest into its region
// of the segment and counts itself in; the last to arrive merges the machine's forests (the
// same sibling additions as everywhere: task_tree.hpp) and publishes the root, which every
// process copies out. Only that last process works between the arrivals and the root, so a
// meta-iteration waits for no process to be scheduled but the slowest, the property that
// keeps processes sharing cores (more processes than cores) fast.
//
// On a run over several machines, the first process of each also combines the machine's
// forest with the other machines' (`across`: messages in log2 rounds, PythonRelay), between
// the merge and the root.
//
// A forest wider than a region goes through in blocks of columns (values), one exchange each:
// the tree adds element by element, so the bits do not depend on the blocks.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "metafast/cancellation.hpp"
#include "metafast/forest_bytes.hpp"
#include "metafast/function_ref.hpp"
#include "metafast/meta_iteration.hpp"
#include "metafast/shared_word.hpp"
#include "metafast/task_tree.hpp"

namespace metafast {

// The segment's first bytes; zeroed before a run (the Python layer, while no process uses it).
struct MachineControl {
    SharedWord arrived;  // processes arrived in the current exchange
    SharedWord merged;   // exchanges whose machine forest is merged (several machines)
    SharedWord done;     // exchanges whose root is published: what every process waits on
    SharedWord broken;   // why a process left the exchange (ExchangeBroken), 0 while none did
};

enum ExchangeBroken : std::uint32_t {
    exchange_stopped = 1,  // a stop (Ctrl-C): the others stop too
    exchange_failed = 2,   // an error: the others' shares count as failed elsewhere
};

// Marks the exchange in `segment` broken and wakes the processes sleeping in it.
inline void leave_exchange(std::uint8_t* segment, ExchangeBroken why) {
    MachineControl& c = *reinterpret_cast<MachineControl*>(segment);
    c.broken.value.store(why, std::memory_order_seq_cst);
    for (SharedWord* word : {&c.merged, &c.done}) word->wake_sleepers();
}

template <class T>
class MachineExchange final : public Combination<T> {
public:
    // A sleeping waiter checks every tick whether another process left the exchange, and
    // every ticks_per_watch ticks (a second) that its partners are alive (`watch`) and that no
    // stop (Ctrl-C) is pending.
    static constexpr std::chrono::milliseconds tick{100};
    static constexpr unsigned ticks_per_watch = 10;

    // `segment`: `bytes` of shared memory; `process`: this process's index among the machine's
    // bounds.size() - 1 processes, process p holding tasks [bounds[p], bounds[p + 1]) of
    // `total`; `several_machines`: whether the run spans other machines, whose forests
    // `across` combines with this machine's on its first process (null on the others);
    // `watch`: called about once a second while a wait lasts (the Python layer's check that
    // the machine's processes are alive; it may throw).
    MachineExchange(std::uint8_t* segment, std::size_t bytes, std::size_t process, std::vector<std::size_t> bounds,
                    std::size_t total, bool several_machines, Combination<T>* across, FunctionRef<void()> watch)
        : segment_(segment), process_(process), bounds_(std::move(bounds)), total_(total),
          several_machines_(several_machines), across_(across), watch_(watch) {
        if (bounds_.size() < 2 || process_ + 1 >= bounds_.size() || bounds_.back() > total_ ||
            !std::is_sorted(bounds_.begin(), bounds_.end()))
            throw std::invalid_argument("a machine's exchange needs its processes' adjacent task ranges");
        if ((across_ != nullptr) != (several_machines_ && process_ == 0))
            throw std::invalid_argument("a run over several machines combines across them on each machine's first process");
        if (reinterpret_cast<std::uintptr_t>(segment) % alignof(MachineControl) != 0)
            throw std::invalid_argument("the shared segment is not aligned to a cache line");
        const std::size_t processes = bounds_.size() - 1;
        for (std::size_t p = 0; p < processes; ++p) {
            expected_.push_back(TaskForest<T>::nodes_of(bounds_[p], bounds_[p + 1], total_));
            max_nodes_ = std::max(max_nodes_, expected_.back());
        }
        max_nodes_ = std::max(max_nodes_, TaskForest<T>::nodes_of(bounds_.front(), bounds_.back(), total_));
        values_offset_ = round_up(forest_bytes::header_words(max_nodes_) * sizeof(std::uint64_t), 64);
        region_bytes_ = bytes > sizeof(MachineControl) ? (bytes - sizeof(MachineControl)) / (processes + 1) / 64 * 64 : 0;
        if (region_bytes_ < values_offset_ + max_nodes_ * sizeof(T))
            throw std::invalid_argument("a shared segment of " + std::to_string(bytes) + " bytes is too small for " +
                                        std::to_string(processes) + " processes");
    }

    void combine(TaskForest<T>& forest, std::size_t width, bool& failed) override {
        const std::size_t block = std::min(width, (region_bytes_ - values_offset_) / sizeof(T) / max_nodes_);
        const std::size_t blocks = width == 0 ? 1 : (width + block - 1) / block;
        if (root_.size() < width) root_.resize(width);
        TreeNode<T> root{};
        for (std::size_t b = 0; b < blocks; ++b) {
            const std::size_t first = b * block, columns = std::min(block, width - first);
            write(region(process_), forest, first, columns, failed);
            if (!exchange(columns)) {  // another process failed: no root, of the right shape
                failed = true;
                std::fill(root_.begin(), root_.end(), T(0));
                forest.cover(TaskSlots<T>{root_.data(), 0, width, 0, {}}, 0, total_);
                return;
            }
            Region out = region(processes());
            root = out.node(0, columns);
            failed = out.failed();
            if (columns) std::memcpy(root_.data() + first, out.values(0, columns), columns * sizeof(T));
        }
        forest.reset(total_, 0);
        forest.push({root.first, root.size, root.scores, root_.data()}, 0);
    }

    std::size_t first_task() const override { return bounds_[process_]; }
    std::size_t total_tasks(std::size_t) const override { return total_; }

private:
    // A process's region: a forest's header (forest_bytes.hpp), then (from values_offset_) its
    // nodes' values, `columns` each. Region `processes()` holds the machine's forest, then its
    // root.
    class Region {
    public:
        Region(std::uint8_t* base, std::size_t values_offset) : base_(base), values_offset_(values_offset) {}
        std::uint64_t* words() const { return reinterpret_cast<std::uint64_t*>(base_); }
        std::size_t count() const { return forest_bytes::count(words()); }
        bool failed() const { return forest_bytes::failed(words()); }
        T* values(std::size_t node, std::size_t columns) const {
            return reinterpret_cast<T*>(base_ + values_offset_) + node * columns;
        }
        TreeNode<T> node(std::size_t n, std::size_t columns) const {
            return forest_bytes::node(words(), n, values(n, columns));
        }

    private:
        std::uint8_t* base_;
        std::size_t values_offset_;
    };

    static constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

    std::size_t processes() const { return bounds_.size() - 1; }
    MachineControl& control() const { return *reinterpret_cast<MachineControl*>(segment_); }
    Region region(std::size_t p) const {
        return {segment_ + sizeof(MachineControl) + p * region_bytes_, values_offset_};
    }

    // Columns [first, first + columns) of the forest's nodes into `out`.
    static void write(Region out, const TaskForest<T>& forest, std::size_t first, std::size_t columns, bool failed) {
        forest_bytes::write_header(out.words(), forest, failed);
        if (columns)
            for (std::size_t n = 0; n < forest.size(); ++n)
                std::memmove(out.values(n, columns), forest[n].values + first, columns * sizeof(T));
    }

    // One exchange of this process's region (written): true once the root is published in
    // the machine's region, false where another process failed instead.
    bool exchange(std::size_t columns) {
        MachineControl& c = control();
        const std::uint32_t round = c.done.value.load(std::memory_order_acquire);
        if (c.arrived.value.fetch_add(1, std::memory_order_acq_rel) + 1 == processes()) {
            c.arrived.value.store(0, std::memory_order_relaxed);  // before the publication below
            guarded([&] { merge(columns); });
            (several_machines_ ? c.merged : c.done).publish(round + 1);
        }
        if (across_) {  // this machine's first process: combine across machines
            if (!wait(c.merged, round)) return false;
            guarded([&] { combine_across(columns); });
            c.done.publish(round + 1);
        }
        return wait(c.done, round);
    }

    // The last process to arrive: the machine's forests, merged, into the machine's region.
    void merge(std::size_t columns) {
        merged_.reset(total_, bounds_.front());
        bool failed = false;
        for (std::size_t p = 0; p < processes(); ++p) {
            const Region in = region(p);
            if (in.count() != expected_[p])
                throw std::runtime_error("process " + std::to_string(p) + " of this machine wrote " +
                                         std::to_string(in.count()) + " nodes of the task tree, " +
                                         std::to_string(expected_[p]) + " expected: the processes disagree on the meta-batch");
            failed = failed || in.failed();
            for (std::size_t n = 0; n < in.count(); ++n) push(in.node(n, columns), columns);
        }
        write(region(processes()), merged_, 0, columns, failed);
    }

    // The machine's forest combined with the other machines': the root, into the machine's region.
    void combine_across(std::size_t columns) {
        const Region machine = region(processes());
        bool failed = machine.failed();
        merged_.reset(total_, bounds_.front());
        for (std::size_t n = 0; n < machine.count(); ++n) push(machine.node(n, columns), columns);
        across_->combine(merged_, columns, failed);
        write(machine, merged_, 0, columns, failed);
    }

    void push(const TreeNode<T>& node, std::size_t columns) {
        if (node.first != merged_.next())
            throw std::runtime_error("a forest of the exchange starts at task " + std::to_string(node.first) +
                                     ", task " + std::to_string(merged_.next()) + " expected");
        merged_.push(node, columns);
    }

    // Runs f; when it throws, marks the exchange broken (the other processes stop waiting for
    // what this one will not publish) and rethrows.
    template <class F>
    void guarded(F&& f) {
        try {
            f();
        } catch (const Cancelled&) {
            leave_exchange(segment_, exchange_stopped);
            throw;
        } catch (...) {
            leave_exchange(segment_, exchange_failed);
            throw;
        }
    }

    // Waits for `word` to move on from `round`: true when it did, false when another process
    // failed. Every tick it checks that no other process left the exchange; about once a
    // second that the machine's processes are alive (watch) and whether a stop (Ctrl-C) is
    // pending, in which case it leaves: every process got the stop or sees the exchange broken.
    bool wait(SharedWord& word, std::uint32_t round) {
        struct FailedElsewhere {};
        unsigned ticks = 0;
        try {
            word.wait_while(round, tick, [&] {
                const std::uint32_t why = control().broken.value.load(std::memory_order_acquire);
                if (why == exchange_stopped) throw Cancelled();
                if (why != 0) {
                    watch_();  // names a lost process where one is gone
                    throw FailedElsewhere{};
                }
                if (++ticks % ticks_per_watch == 0) {
                    guarded([&] {
                        watch_();
                        cancellation::throw_if_cancelled();
                    });
                }
            });
        } catch (const FailedElsewhere&) {
            return false;
        }
        return true;
    }

    std::uint8_t* segment_;
    std::size_t process_;
    std::vector<std::size_t> bounds_, expected_;
    std::size_t total_, max_nodes_ = 1, values_offset_ = 0, region_bytes_ = 0;
    bool several_machines_;
    Combination<T>* across_;
    FunctionRef<void()> watch_;
    TaskForest<T> merged_;
    std::vector<T> root_;  // the root's values, all blocks
};

}  // namespace metafast
