// Ctrl-C during a long call of the core (evaluation, adaptation). Python runs its SIGINT
// handler only between bytecodes, so a call that holds no GIL for seconds would not be
// stopped until it ends. For such a call made from the main thread, a C handler is installed
// that asks the core to stop (cancellation::requested: the loops end within one step, having
// changed nothing) and passes the signal on to the handler that was there, Python's; once the
// call is back, Python's handler runs as always (KeyboardInterrupt, or the user's own).
#pragma once

#include <csignal>

#include "pybind11.hpp"
#include "metafast/cancellation.hpp"

namespace metafast::bindings {

class SigintForwarding {
public:
    // Installs the forwarding handler when Python's own handler is in place and this is the
    // main thread (where Python handles signals); otherwise does nothing.
    SigintForwarding() {
        if (!in_main_thread()) return;
        struct sigaction current {};
        if (sigaction(SIGINT, nullptr, &current) != 0 || (current.sa_flags & SA_SIGINFO) ||
            current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN)
            return;
        previous() = current;
        struct sigaction forwarding = current;
        forwarding.sa_handler = &forward;
        installed_ = sigaction(SIGINT, &forwarding, nullptr) == 0;
        cancellation::requested.store(false);
        // A signal noted by Python's handler since its last bytecode (while the arguments were
        // checked) would wait for the whole call: served now, before the call starts.
        if (installed_ && PyErr_CheckSignals() != 0) {
            sigaction(SIGINT, &previous(), nullptr);
            throw py::error_already_set();
        }
    }
    ~SigintForwarding() {
        if (installed_) sigaction(SIGINT, &previous(), nullptr);
        cancellation::requested.store(false);
    }
    SigintForwarding(const SigintForwarding&) = delete;
    SigintForwarding& operator=(const SigintForwarding&) = delete;

private:
    static struct sigaction& previous() {
        static struct sigaction handler {};
        return handler;
    }
    static void forward(int signal) {
        cancellation::requested.store(true);
        previous().sa_handler(signal);  // Python's: it notes the signal for later
    }
    static bool in_main_thread() {  // with the GIL held
        static const unsigned long main = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
        return PyThread_get_thread_ident() == main;
    }
    bool installed_ = false;
};

// Runs call() (which releases the GIL itself) so that Ctrl-C stops it: a Cancelled core
// becomes the exception Python's handler raises (KeyboardInterrupt unless the user chose
// otherwise).
// Raises what Python's SIGINT handler raises (KeyboardInterrupt unless the user chose
// otherwise; KeyboardInterrupt too when the handler raises nothing, as a call that was stopped
// has no result).
[[noreturn]] inline void raise_interrupt() {
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
}

template <class Call>
auto interruptible(Call&& call) {
    SigintForwarding forwarding;
    try {
        return call();
    } catch (const Cancelled&) {
        raise_interrupt();
    }
}

}  // namespace metafast::bindings
