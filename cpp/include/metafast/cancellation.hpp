// Stopping a long call early: the bindings raise `requested` from a signal handler (Ctrl-C),
// and loops that may run long (evaluation and adaptation, one step at a time) call
// throw_if_cancelled(), which throws Cancelled: the call ends within a step, having changed
// nothing (those loops only read the learner).
#pragma once

#include <atomic>
#include <exception>

namespace metafast {

struct Cancelled : std::exception {
    const char* what() const noexcept override { return "cancelled"; }
};

namespace cancellation {

// Lock-free, so a signal handler may set it.
inline std::atomic<bool> requested{false};

inline void throw_if_cancelled() {
    if (requested.load(std::memory_order_relaxed)) throw Cancelled();
}

}  // namespace cancellation
}  // namespace metafast
