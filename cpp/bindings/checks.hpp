// The checks of scalar arguments: each hyperparameter the core receives is range-checked here,
// once, with one message (the Python layer settles only types: a number, an integer, a string).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "arrays.hpp"
#include "metafast/thread_budget.hpp"

namespace metafast::bindings {

// A number as a message shows it: 0.1, 1e-09, 5 (std::to_string would give 0.000000 for 1e-9).
inline std::string number_text(double value) {
    char text[32];
    std::snprintf(text, sizeof(text), "%g", value);
    return text;
}

// num_threads of every call that takes one (0: all cores).
inline int checked_threads(int threads) {
    require(threads >= 0 && threads <= max_threads_allowed,
            "num_threads must lie in [0, 1024] (0 or None: all cores), got " + std::to_string(threads));
    return threads;
}

// The most tasks of a batch, and steps (as the Python layer's MAX_COUNT).
constexpr std::size_t max_tasks = std::size_t{1} << 24;

inline std::size_t checked_count(std::int64_t value, const char* name, std::size_t most) {
    require(value >= 1 && static_cast<std::uint64_t>(value) <= most,
            std::string(name) + " must lie in [1, " + std::to_string(most) + "], got " + std::to_string(value));
    return static_cast<std::size_t>(value);
}

inline double checked_positive(double value, const char* name) {
    require(std::isfinite(value) && value > 0, std::string(name) + " must be a finite number > 0, got " + number_text(value));
    return value;
}

// A number in [low, high] (open at low when low_open).
inline double checked_within(double value, const char* name, double low, double high, bool low_open = false) {
    require(std::isfinite(value) && (low_open ? value > low : value >= low) && value <= high,
            std::string(name) + " must lie in " + (low_open ? "(" : "[") + number_text(low) + ", " + number_text(high) +
                "], got " + number_text(value));
    return value;
}

}  // namespace metafast::bindings
