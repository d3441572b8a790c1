// 2D navigation (Finn et al. 2017, the MAML and Meta-SGD reinforcement-learning benchmark):
// a point agent starts at the origin; each task has a goal; the action is a velocity.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "metafast/rng.hpp"

namespace metafast {

struct Navigation2D {
    double goal_low = -0.5, goal_high = 0.5;
    double max_action = 0.1;  // each coordinate of a velocity is clipped to [-max_action, max_action]
    double tolerance = 0.01;  // an episode ends when both coordinates are this close to the goal
    std::size_t horizon = 100;
    bool squared = false;     // reward -|p - g|^2 (the MAML paper's text) instead of -|p - g|
    // The policy acts in [-1, 1] per coordinate and the velocity is max_action times the action,
    // as in the papers' code (rllab's normalized environments); otherwise the action is the velocity.
    bool scaled_actions = true;

    void sample_goal(CounterRng& rng, double* goal) const {
        goal[0] = rng.uniform(goal_low, goal_high);
        goal[1] = rng.uniform(goal_low, goal_high);
    }

    // Moves `position` by the clipped action and returns the reward of the new position;
    // `done` tells whether the agent reached the goal.
    double step(double* position, const double* action, const double* goal, bool& done) const {
        const double scale = scaled_actions ? max_action : 1.0;
        for (int d = 0; d < 2; ++d) position[d] += std::clamp(scale * action[d], -max_action, max_action);
        const double dx = position[0] - goal[0], dy = position[1] - goal[1];
        done = std::abs(dx) <= tolerance && std::abs(dy) <= tolerance;
        const double squared_distance = dx * dx + dy * dy;
        return squared ? -squared_distance : -std::sqrt(squared_distance);
    }
};

}  // namespace metafast
