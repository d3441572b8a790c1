// Built-in task families, sampled natively from a CounterRng. A task is a support set (used
// to adapt) and a query set (used to score the adaptation) drawn from the same task.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <variant>
#include <vector>

#include "metafast/data_tasks.hpp"
#include "metafast/kernels.hpp"
#include "metafast/rng.hpp"
#include "metafast/task_layout.hpp"

namespace metafast {


// y = A sin(x + phase_sign * phi), A ~ U[amplitude], phi ~ U[phase]; x ~ U[x_range], or drawn
// uniformly (with replacement) from `grid` evenly spaced points of x_range when grid > 0.
struct Sinusoid {
    double amplitude_low, amplitude_high, phase_low, phase_high, x_low, x_high;
    std::size_t grid;
    double phase_sign;
    std::size_t support, query;

    std::size_t input_width() const { return 1; }
    std::size_t output_width() const { return 1; }
    bool has_labels() const { return false; }
    std::size_t support_rows() const { return support; }
    std::size_t query_rows() const { return query; }

    template <class T>
    void sample(CounterRng& rng, const TaskSlot<T>& slot, SampleScratch& memory) const {
        std::vector<double>& scratch = memory.values;
        const double amplitude = rng.uniform(amplitude_low, amplitude_high);
        const double phase = phase_sign * rng.uniform(phase_low, phase_high);
        scratch.resize(2 * std::max(support, query));
        fill(rng, amplitude, phase, support, slot.x_support, slot.y_support, scratch.data());
        fill(rng, amplitude, phase, query, slot.x_query, slot.y_query, scratch.data());
    }

private:
    // x row by row from the stream (grid points through below(), as in CounterRng), then the
    // sine wave on whole vectors (box_muller::sin, within a few ulp of the C library's sin).
    template <class T>
    void fill(CounterRng& rng, double amplitude, double phase, std::size_t rows, T* x, T* y, double* xs) const {
        if (grid > 0) {
            rng.fill_uniform(xs, rows, 0.0, 1.0);
            for (std::size_t r = 0; r < rows; ++r) {
                const std::uint64_t k = CounterRng::scale_below(xs[r], grid);
                xs[r] = x_low + (x_high - x_low) * double(k) / double(grid - 1);
            }
        } else {
            rng.fill_uniform(xs, rows, x_low, x_high);
        }
        double* ys = xs + rows;
#ifdef METAFAST_VECTOR_KERNELS
        using box_muller::Doubles, box_muller::lanes;
        for (std::size_t r = 0; r < rows; r += lanes) {
            Doubles v{};
            for (std::size_t l = 0; l < lanes && r + l < rows; ++l) v[l] = xs[r + l];
            v = amplitude * box_muller::sin(v + phase);
            for (std::size_t l = 0; l < lanes && r + l < rows; ++l) ys[r + l] = v[l];
        }
#else
        for (std::size_t r = 0; r < rows; ++r) ys[r] = amplitude * std::sin(xs[r] + phase);
#endif
        for (std::size_t r = 0; r < rows; ++r) {
            x[r] = T(xs[r]);
            y[r] = T(ys[r]);
        }
    }
};

// Each task a random hyperplane through the origin: w ~ N(0, I), x ~ U[-1, 1]^dim,
// y = 1[x . w > 0]. Learnable: the labels depend on x. Draws w with fill_normal, then the
// support rows' and the query rows' x with fill_uniform32 (32 random bits each, as x is
// stored as float32: half the mixing of 53-bit uniforms, which were half the sampling).
struct LinearBinary {
    std::size_t dim, support, query;

    std::size_t input_width() const { return dim; }
    std::size_t output_width() const { return 1; }
    bool has_labels() const { return false; }
    std::size_t support_rows() const { return support; }
    std::size_t query_rows() const { return query; }

    template <class T>
    void sample(CounterRng& rng, const TaskSlot<T>& slot, SampleScratch& memory) const {
        std::vector<double>& scratch = memory.values;
        const std::size_t rows = std::max(support, query);
        scratch.resize(dim + rows * dim + rows);
        double* w = scratch.data();
        rng.fill_normal(w, dim);
        fill(rng, w, w + dim, w + dim + rows * dim, support, slot.x_support, slot.y_support);
        fill(rng, w, w + dim, w + dim + rows * dim, query, slot.x_query, slot.y_query);
    }

private:
    template <class T>
    void fill(CounterRng& rng, const double* w, double* rows_x, double* projections, std::size_t rows, T* x,
              T* y) const {
        rng.fill_uniform32(rows_x, rows * dim, -1.0, 1.0);
        for (std::size_t i = 0; i < rows * dim; ++i) x[i] = T(rows_x[i]);
        kernels::gemm_nn(rows, 1, dim, rows_x, w, projections, false);
        for (std::size_t r = 0; r < rows; ++r) y[r] = projections[r] > 0.0 ? T(1) : T(0);
    }
};

// The book's tasks: x ~ U[0, 1)^dim and fair-coin labels independent of x (nothing to learn
// beyond the label frequencies; kept to reproduce the book).
struct SeedBinary {
    std::size_t dim, support, query;

    std::size_t input_width() const { return dim; }
    std::size_t output_width() const { return 1; }
    bool has_labels() const { return false; }
    std::size_t support_rows() const { return support; }
    std::size_t query_rows() const { return query; }

    template <class T>
    void sample(CounterRng& rng, const TaskSlot<T>& slot, SampleScratch& memory) const {
        std::vector<double>& scratch = memory.values;
        fill(rng, support, slot.x_support, slot.y_support, scratch);
        fill(rng, query, slot.x_query, slot.y_query, scratch);
    }

private:
    template <class T>
    void fill(CounterRng& rng, std::size_t rows, T* x, T* y, std::vector<double>& row) const {
        row.resize(dim);
        for (std::size_t r = 0; r < rows; ++r) {
            rng.fill_uniform(row.data(), dim, 0.0, 1.0);
            for (std::size_t d = 0; d < dim; ++d) x[r * dim + d] = T(row[d]);
            y[r] = rng.uniform() < 0.5 ? T(1) : T(0);
        }
    }
};

// N-way classification: class centres c_k ~ N(0, I_dim) fresh per task; a row of class k is
// c_k + spread * N(0, I). `support` and `query` are shots per class; row r has label r % ways.
// Draws the centres, then the support rows' noise, then the query rows', each with fill_normal.
struct GaussianNWay {
    std::size_t ways, dim, support, query;
    double spread;

    std::size_t input_width() const { return dim; }
    std::size_t output_width() const { return ways; }
    bool has_labels() const { return true; }
    std::size_t support_rows() const { return ways * support; }
    std::size_t query_rows() const { return ways * query; }

    template <class T>
    void sample(CounterRng& rng, const TaskSlot<T>& slot, SampleScratch& memory) const {
        std::vector<double>& scratch = memory.values;
        scratch.resize(ways * dim + std::max(support_rows(), query_rows()) * dim);
        rng.fill_normal(scratch.data(), ways * dim);
        fill(rng, scratch.data(), scratch.data() + ways * dim, support_rows(), slot.x_support, slot.labels_support);
        fill(rng, scratch.data(), scratch.data() + ways * dim, query_rows(), slot.x_query, slot.labels_query);
    }

private:
    template <class T>
    void fill(CounterRng& rng, const double* centres, double* noise, std::size_t rows, T* x,
              std::int64_t* labels) const {
        rng.fill_normal(noise, rows * dim);
        for (std::size_t r = 0; r < rows; ++r) {
            const std::size_t k = r % ways;
            labels[r] = static_cast<std::int64_t>(k);
            for (std::size_t d = 0; d < dim; ++d)
                x[r * dim + d] = T(centres[k * dim + d] + spread * noise[r * dim + d]);
        }
    }
};

using TaskFamily = std::variant<Sinusoid, LinearBinary, SeedBinary, GaussianNWay, Classification, Regression, TaskPool>;

// Draws task `task` of meta-iteration `iteration` into `slot`; `scratch` is reused memory.
template <class T>
void sample_task(const TaskFamily& family, std::uint64_t seed, std::uint64_t iteration,
                 std::uint64_t task, const TaskSlot<T>& slot, SampleScratch& scratch) {
    CounterRng rng(seed, iteration, task);
    std::visit([&](const auto& f) { f.sample(rng, slot, scratch); }, family);
}


inline TaskShape task_shape(const TaskFamily& family) {
    return std::visit(
        [](const auto& f) {
            return TaskShape{f.input_width(), f.output_width(), f.support_rows(), f.query_rows(),
                             f.has_labels()};
        },
        family);
}

}  // namespace metafast
