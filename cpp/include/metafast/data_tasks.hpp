// Task families drawn from a user's data: N-way K-shot episodes from labelled rows, regression
// tasks from rows grouped by task, and a fixed pool of tasks. Each holds one private copy of
// the data (shared by its copies, never copied per task) and draws from the same
// (seed, iteration, task) streams as the synthetic families.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "metafast/rng.hpp"
#include "metafast/task_layout.hpp"

namespace metafast {

// A table of rows (rows x width) in float32 or float64, as the user gave it; read as T.
class RowTable {
public:
    RowTable() = default;
    RowTable(std::vector<float> values, std::size_t width) : single_(std::move(values)), width_(width) {}
    RowTable(std::vector<double> values, std::size_t width) : double_(std::move(values)), width_(width) {}

    std::size_t width() const { return width_; }
    std::size_t rows() const { return width_ ? (single_.size() + double_.size()) / width_ : 0; }

    template <class T>
    void copy_row(std::size_t row, T* out) const {
        if (!single_.empty()) {
            std::copy_n(single_.data() + row * width_, width_, out);
        } else {
            std::copy_n(double_.data() + row * width_, width_, out);
        }
    }

private:
    std::vector<float> single_;
    std::vector<double> double_;
    std::size_t width_ = 0;
};

// Rows grouped: group g holds rows[offsets[g] .. offsets[g + 1]) of the table, in row order.
struct RowGroups {
    std::vector<std::size_t> offsets, rows;

    std::size_t groups() const { return offsets.size() - 1; }
    std::size_t size(std::size_t g) const { return offsets[g + 1] - offsets[g]; }
    std::size_t row(std::size_t g, std::size_t i) const { return rows[offsets[g] + i]; }
};

// Appends k distinct integers of [0, n), in uniformly random order, to `picks` (k <= n):
// Floyd's sampling of a k-subset, then a Fisher-Yates shuffle of it. O(k^2), no O(n) memory,
// so an episode costs the same from a class of ten rows as from one of a million.
inline void pick_distinct(CounterRng& rng, std::size_t n, std::size_t k, std::vector<std::size_t>& picks) {
    const std::size_t first = picks.size();
    for (std::size_t j = n - k; j < n; ++j) {
        const std::size_t t = rng.below(j + 1);
        const bool taken = std::find(picks.begin() + static_cast<std::ptrdiff_t>(first), picks.end(), t) != picks.end();
        picks.push_back(taken ? j : t);
    }
    for (std::size_t i = k; i > 1; --i) std::swap(picks[first + i - 1], picks[first + rng.below(i)]);
}

// How a Classification family draws images: each class seen in `rotations` quarter turns, each
// turn a class of its own, and each drawn image shifted by up to `max_shift` pixels (empty
// pixels 0). Rows are (channels, side, side) images in C order; rotations = 1 and max_shift = 0
// copy rows as they are, whatever their shape.
struct ImageAugmentation {
    std::size_t channels = 0, side = 0;
    std::size_t rotations = 1, max_shift = 0;

    bool copies_rows() const { return rotations == 1 && max_shift == 0; }

    // Writes the image `source` turned by `turns` quarter turns counterclockwise (np.rot90 over
    // the last two axes) and moved by (down, right) pixels to `out`.
    template <class S, class T>
    void draw(const S* source, std::size_t turns, std::ptrdiff_t down, std::ptrdiff_t right, T* out) const {
        const auto n = static_cast<std::ptrdiff_t>(side);
        for (std::size_t c = 0; c < channels; ++c) {
            const S* plane = source + c * side * side;
            T* target = out + c * side * side;
            for (std::ptrdiff_t i = 0; i < n; ++i) {
                for (std::ptrdiff_t j = 0; j < n; ++j) {
                    const std::ptrdiff_t a = i - down, b = j - right;  // the pixel of the turned image shown here
                    if (a < 0 || a >= n || b < 0 || b >= n) {
                        target[i * n + j] = T(0);
                        continue;
                    }
                    std::ptrdiff_t row = a, column = b;  // where np.rot90(plane, turns)[a, b] comes from
                    if (turns == 1) row = b, column = n - 1 - a;
                    if (turns == 2) row = n - 1 - a, column = n - 1 - b;
                    if (turns == 3) row = n - 1 - b, column = a;
                    target[i * n + j] = static_cast<T>(plane[row * n + column]);
                }
            }
        }
    }
};

// Classes grouped for episodes drawn within one group (Omniglot's alphabets): group g holds
// the classes members.row(g, .), and episodes draw from the groups of `eligible` (those with
// enough classes for a task) uniformly.
struct ClassGroups {
    RowGroups members;
    std::vector<std::size_t> eligible;
};

// N-way K-shot classification from labelled rows: per task, `ways` of the classes without
// replacement (of one group's classes, with episode groups), relabelled 0..ways-1 in the
// order drawn; from each, shots + query rows without replacement, the first `shots` to the
// support set. Row r of a set has label r % ways (as GaussianNWay). With rotations R, the
// classes drawn from are (class, turn) pairs: drawn index d is class d / R turned d % R times.
struct Classification {
    std::shared_ptr<const RowTable> features;
    std::shared_ptr<const RowGroups> classes;
    std::size_t ways, shots, query;
    ImageAugmentation images{};
    std::shared_ptr<const ClassGroups> episode_groups;  // null: episodes draw from every class

    std::size_t input_width() const { return features->width(); }
    std::size_t output_width() const { return ways; }
    bool has_labels() const { return true; }
    std::size_t support_rows() const { return ways * shots; }
    std::size_t query_rows() const { return ways * query; }

    template <class T>
    void sample(CounterRng& rng, const TaskSlot<T>& slot, SampleScratch& memory) const {
        std::vector<std::size_t>& picks = memory.picks;
        picks.clear();
        const std::size_t turns = images.rotations;
        std::size_t group = 0;
        if (episode_groups) {
            group = episode_groups->eligible[rng.below(episode_groups->eligible.size())];
            pick_distinct(rng, episode_groups->members.size(group) * turns, ways, picks);
        } else {
            pick_distinct(rng, classes->groups() * turns, ways, picks);
        }
        const std::size_t width = features->width();
        for (std::size_t w = 0; w < ways; ++w) {
            const std::size_t drawn = picks[w] / turns, turn = picks[w] % turns;
            const std::size_t label = episode_groups ? episode_groups->members.row(group, drawn) : drawn;
            picks.resize(ways);
            pick_distinct(rng, classes->size(label), shots + query, picks);
            for (std::size_t i = 0; i < shots + query; ++i) {
                const std::size_t row = classes->row(label, picks[ways + i]);
                const bool support = i < shots;
                const std::size_t r = (support ? i : i - shots) * ways + w;
                T* out = (support ? slot.x_support : slot.x_query) + r * width;
                if (images.copies_rows()) {
                    features->copy_row(row, out);
                } else {
                    draw_image(rng, row, turn, memory, out);
                }
                (support ? slot.labels_support : slot.labels_query)[r] = static_cast<std::int64_t>(w);
            }
        }
    }

private:
    template <class T>
    void draw_image(CounterRng& rng, std::size_t row, std::size_t turn, SampleScratch& memory, T* out) const {
        std::ptrdiff_t down = 0, right = 0;
        if (images.max_shift > 0) {
            const std::size_t span = 2 * images.max_shift + 1;
            down = static_cast<std::ptrdiff_t>(rng.below(span)) - static_cast<std::ptrdiff_t>(images.max_shift);
            right = static_cast<std::ptrdiff_t>(rng.below(span)) - static_cast<std::ptrdiff_t>(images.max_shift);
        }
        std::vector<double>& source = memory.values;  // within SampleScratch::bytes: one row of a task's inputs
        source.resize(features->width());
        features->copy_row(row, source.data());
        images.draw(source.data(), turn, down, right, out);
    }
};

// Regression tasks from rows grouped by task: per task, one group uniformly, and support +
// query of its rows without replacement, the first `support` to the support set.
struct Regression {
    std::shared_ptr<const RowTable> inputs, targets;
    std::shared_ptr<const RowGroups> tasks;
    std::size_t support, query;

    std::size_t input_width() const { return inputs->width(); }
    std::size_t output_width() const { return targets->width(); }
    bool has_labels() const { return false; }
    std::size_t support_rows() const { return support; }
    std::size_t query_rows() const { return query; }

    template <class T>
    void sample(CounterRng& rng, const TaskSlot<T>& slot, SampleScratch& memory) const {
        std::vector<std::size_t>& picks = memory.picks;
        picks.clear();
        const std::size_t group = rng.below(tasks->groups());
        pick_distinct(rng, tasks->size(group), support + query, picks);
        const std::size_t in = inputs->width(), out = targets->width();
        for (std::size_t i = 0; i < support + query; ++i) {
            const std::size_t row = tasks->row(group, picks[i]);
            const bool in_support = i < support;
            const std::size_t r = in_support ? i : i - support;
            inputs->copy_row(row, (in_support ? slot.x_support : slot.x_query) + r * in);
            targets->copy_row(row, (in_support ? slot.y_support : slot.y_query) + r * out);
        }
    }
};

// A fixed pool of tasks (a TaskBatch): each task of a meta-batch is one of them, uniformly and
// independently (with replacement). Float targets or labels, as the pool has.
struct TaskPool {
    // Per pool task: its support and query inputs, and targets (rows x outputs) or labels.
    std::shared_ptr<const RowTable> x_support, y_support, x_query, y_query;
    std::shared_ptr<const std::vector<std::int64_t>> labels_support, labels_query;
    std::size_t tasks;
    TaskShape shape;

    std::size_t input_width() const { return shape.input_width; }
    std::size_t output_width() const { return shape.output_width; }
    bool has_labels() const { return shape.has_labels; }
    std::size_t support_rows() const { return shape.support_rows; }
    std::size_t query_rows() const { return shape.query_rows; }

    template <class T>
    void sample(CounterRng& rng, const TaskSlot<T>& slot, SampleScratch&) const {
        const std::size_t t = rng.below(tasks);
        copy_set(t, shape.support_rows, *x_support, y_support.get(), labels_support.get(), slot.x_support,
                 slot.y_support, slot.labels_support);
        copy_set(t, shape.query_rows, *x_query, y_query.get(), labels_query.get(), slot.x_query, slot.y_query,
                 slot.labels_query);
    }

private:
    // Rows t * rows .. (t + 1) * rows of the pool's tables are task t's.
    template <class T>
    static void copy_set(std::size_t t, std::size_t rows, const RowTable& x, const RowTable* y,
                         const std::vector<std::int64_t>* labels, T* x_out, T* y_out, std::int64_t* labels_out) {
        for (std::size_t r = 0; r < rows; ++r) {
            x.copy_row(t * rows + r, x_out + r * x.width());
            if (labels) {
                labels_out[r] = (*labels)[t * rows + r];
            } else {
                y->copy_row(t * rows + r, y_out + r * y->width());
            }
        }
    }
};

}  // namespace metafast
