"""The core's headers point one way: each includes only headers of its own layer or the layers
below it (docs/architecture.md, "Files"), so kernels never reach into learners."""

from __future__ import annotations

import re
from pathlib import Path

HEADERS = Path(__file__).resolve().parents[1] / "cpp" / "include" / "metafast"

LAYERS = [
    ["simd", "cpu_features", "peak_probe", "denormals", "buffer", "fast_math", "box_muller", "softplus", "rng", "cancellation",
     "function_ref"],
    ["kernels", "activations", "losses", "network", "mlp", "mlp_workspace", "backprop", "hvp", "scalar_mlp", "convnet"],
    ["task_layout", "data_tasks", "tasks", "task_batch", "nav2d", "policy", "rl", "trpo"],
    ["meta_sgd", "reptile", "optim", "reptile_update"],
    ["thread_budget", "round_flags", "shared_word", "parallel", "task_tree", "forest_bytes", "meta_iteration", "machine_exchange"],
    ["meta_sgd_learner", "reptile_learner", "rl_learner"],
]
LAYER = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def includes(header: Path) -> list[str]:
    return re.findall(r'#include "metafast/(\w+)\.hpp"', header.read_text())


def test_every_header_has_a_layer():
    assert sorted(p.stem for p in HEADERS.glob("*.hpp")) == sorted(LAYER)


def test_headers_include_only_their_layer_or_below():
    upward = [(h.stem, used) for h in HEADERS.glob("*.hpp") for used in includes(h) if LAYER[used] > LAYER[h.stem]]
    assert upward == []
