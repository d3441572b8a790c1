// How many threads a call uses. A team larger than the cores that are free does not run
// faster: it waits, at every join, on a thread the scheduler has taken off its core, and on a
// machine busy with other processes (a laptop running a build, a CI runner, a shared node)
// that costs whole time slices per meta-iteration. So a call takes the learner's setting, less
// the cores other processes kept busy over the last tenth of a second, and one thread for work
// too small to pay for a team. Results never depend on the team (every reduction runs in task
// order), so the choice is free to follow the machine.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#if defined(__linux__)
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace metafast {

// The most threads a learner accepts (a request beyond the machine is a mistake, and libgomp
// ends the process when it cannot create threads).
constexpr int max_threads_allowed = 1024;

// Threads to use for `requested` (0 = all that OpenMP offers; always 1 without OpenMP).
inline int resolve_threads(int requested) {
#ifdef _OPENMP
    return requested > 0 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

// A run of less work than this (seconds on one thread) takes one thread: waking a team whose
// threads sleep and joining it costs a few microseconds. Measured on 2-core Zen 5 and Sapphire
// Rapids VMs, with the team's threads awake (a loop of calls), two threads already gain 12% on
// a 2-task meta-step of 2 x 3 us; the threshold keeps only runs where nothing can be gained.
constexpr double min_team_seconds = 5e-6;

// Processes and forks. OpenMP's thread pool does not survive fork(): the child has only the
// forking thread, and libgomp, at the child's next team of more than one, waits forever on pool
// threads that do not exist there. So once this process has run a team, a fork handler marks
// its children (and theirs), and every team there is one thread: the results are those of any
// team, bit for bit. A process that never ran a team (a forkserver, a parent that forks before
// training) hands its children a pool they can use, and they keep their threads; spawned
// processes start afresh. Fork handlers also reset the state of this file a child inherits.
namespace forks {

inline std::atomic<bool> team_started{false};  // a team of more than one thread ran in this process
inline std::atomic<bool> child{false};         // this process was forked after a team ran (in it or a parent)

// Handlers run in the child right after fork(), with one thread: only plain stores there.
using ChildHandler = void (*)();
inline void mark_child() {
    if (team_started.load(std::memory_order_relaxed)) child.store(true, std::memory_order_relaxed);
}

// Registers `handler` to run in every child forked from now on (once per handler).
inline void at_fork_in_child(ChildHandler handler) {
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(nullptr, nullptr, handler);
#else
    (void)handler;
#endif
}

// Whether this is a child forked after a team ran: its teams are one thread.
inline bool in_child() { return child.load(std::memory_order_relaxed); }

// The team a parallel region may start for `requested` threads: 1 in a marked child; otherwise
// `requested`, noting (before the pool exists) that children forked from now on are marked.
inline int usable_team(int requested) {
    if (requested <= 1) return requested;
    if (in_child()) return 1;
    static const bool registered = (at_fork_in_child(&mark_child), true);
    (void)registered;
    team_started.store(true, std::memory_order_relaxed);
    return requested;
}

}  // namespace forks

// The cores other processes keep busy, from the kernel's per-CPU counters of the CPUs this
// process may run on, less this process's own CPU time; sampled at most every `window`.
// Linux only; elsewhere (or when /proc is unreadable) every core counts as free.
class MachineLoad {
public:
    static MachineLoad& instance() {
        static MachineLoad load;
        return load;
    }

    // In a forked child: a sampler's lock held by another thread of the parent would stay held
    // (the thread is gone), and the parent's sample counts the parent's CPU time as the
    // child's own; both start afresh.
    void reset_in_child() {
        new (&mutex_) std::mutex;
        last_ = Sample{};
        free_ = cores_;
    }

    // Cores this process may use that other processes left free, as of the last window.
    double free_cores() {
        std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);  // never wait on a sampler
        if (lock.owns_lock()) refresh();
        return free_;
    }

private:
    using Clock = std::chrono::steady_clock;
    static constexpr std::chrono::milliseconds window{100};

    struct Sample {
        Clock::time_point when;
        double busy_seconds = 0;  // all processes, on our CPUs
        double own_seconds = 0;   // this process
        bool valid = false;
    };

    MachineLoad() {
        cores_ = usable_cores();
        free_ = cores_;
        last_ = sample();
        forks::at_fork_in_child([] { instance().reset_in_child(); });  // constructed by now: no recursion
    }

    void refresh() {
        const Clock::time_point now = Clock::now();
        if (now - last_.when < window) return;
        const Sample next = sample();
        if (next.valid && last_.valid) {
            const double wall = std::chrono::duration<double>(next.when - last_.when).count();
            const double others = ((next.busy_seconds - last_.busy_seconds) - (next.own_seconds - last_.own_seconds)) / wall;
            free_ = std::clamp(cores_ - others, 0.0, cores_);
        }
        last_ = next;
    }

    static double usable_cores() {
#ifdef _OPENMP
        return double(omp_get_num_procs());  // respects the affinity mask
#else
        return 1.0;
#endif
    }

    Sample sample() const {
        Sample s;
        s.when = Clock::now();
#if defined(__linux__)
        cpu_set_t mine;
        if (sched_getaffinity(0, sizeof(mine), &mine) != 0) return s;
        std::FILE* file = std::fopen("/proc/stat", "r");
        if (!file) return s;
        const double tick = double(sysconf(_SC_CLK_TCK));
        char line[512];
        double ticks = 0;
        bool any = false;
        while (std::fgets(line, sizeof(line), file)) {
            // "cpuN user nice system idle iowait irq softirq steal ...": busy is all but idle and
            // iowait (steal is time the hypervisor gave to others: not free either).
            int cpu = -1;
            unsigned long long user, nice, system, idle, iowait, irq, softirq, steal = 0;
            if (std::sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &user, &nice, &system, &idle,
                            &iowait, &irq, &softirq, &steal) < 8)
                continue;
            if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &mine)) continue;
            ticks += double(user + nice + system + irq + softirq + steal);
            any = true;
        }
        std::fclose(file);
        rusage usage{};
        if (!any || getrusage(RUSAGE_SELF, &usage) != 0) return s;
        s.busy_seconds = ticks / tick;
        s.own_seconds = double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                        1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
        s.valid = true;
#endif
        return s;
    }

    std::mutex mutex_;
    double cores_ = 1, free_ = 1;
    Sample last_;
};

// METAFAST_TEAMS=exact: every call takes min(threads, pieces of work), whatever the load and the
// size of the work (the test suite uses it, so that the parallel paths run on tiny problems);
// unset or "auto": the team follows the machine.
inline bool exact_teams() {
    static const bool exact = [] {
        const char* value = std::getenv("METAFAST_TEAMS");
        return value && std::string(value) == "exact";
    }();
    return exact;
}

// A learner's thread setting and the team each call gets from it.
class ThreadBudget {
public:
    explicit ThreadBudget(int requested = 0) { set(requested); }

    void set(int requested) { threads_ = resolve_threads(requested); }
    int threads() const { return threads_; }  // the most a call uses; workspaces are sized for it

    // The team for `rounds` rounds of `items` independent pieces of work of `seconds_each` (0:
    // not yet known) each.
    int team(std::size_t items, double seconds_each, std::size_t rounds = 1) const {
        const int team = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads_), std::max<std::size_t>(items, 1)));
        if (team <= 1 || forks::in_child()) return 1;
        if (exact_teams()) return team;
        if (seconds_each > 0 && double(rounds) * double(items) * seconds_each < min_team_seconds) return 1;
        const double free = MachineLoad::instance().free_cores();
        return std::clamp(static_cast<int>(std::floor(free + 0.5)), 1, team);
    }

private:
    int threads_ = 1;
};

// Seconds per piece of work of one kind of call, measured on the calls themselves (an average
// that follows changes within a few calls).
class WorkTimer {
public:
    double seconds_each() const { return seconds_each_; }

    // Starts timing `items` pieces of work run by a team of `team`.
    class Scope {
    public:
        Scope(WorkTimer& timer, std::size_t items, int team)
            : timer_(timer), items_(items), team_(team), start_(std::chrono::steady_clock::now()) {}
        ~Scope() {
            if (items_ == 0) return;
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
            // A team's wall time times its size bounds the work from above: enough to tell small from large.
            const double each = seconds * double(team_) / double(items_);
            timer_.seconds_each_ = timer_.seconds_each_ > 0 ? 0.75 * timer_.seconds_each_ + 0.25 * each : each;
        }
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;

    private:
        WorkTimer& timer_;
        std::size_t items_;
        int team_;
        std::chrono::steady_clock::time_point start_;
    };

private:
    double seconds_each_ = 0;
};

}  // namespace metafast
