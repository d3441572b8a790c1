"""A tiny Gymnasium-style environment for the tests of bring-your-own-environment RL: a point on
a line steers toward a goal. Module-level, so that GymTasks over ``line_world`` pickle."""

from __future__ import annotations

import numpy as np


class LineWorld:
    def __init__(self, goal):
        self.goal, self.position = goal, 0.0

    def reset(self, seed=None):
        self.position = 0.0
        return np.array([self.position]), {}

    def step(self, action):
        self.position += float(np.clip(action[0], -0.1, 0.1))
        distance = abs(self.position - self.goal)
        return np.array([self.position]), -distance, distance < 0.01, False, {}


def line_world(rng):
    """A task: a goal drawn from [-0.5, 0.5)."""
    return LineWorld(float(rng.uniform(-0.5, 0.5)))
