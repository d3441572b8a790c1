"""Fingerprints of short fits: SHA-256 of every learner's parameters after a few meta-iterations,
for the W1-W4 shapes, MAML, multi-step and per-step Meta-SGD, classification, a ConvNet and RL.

A change that claims to keep a CPU level's bits is checked against the fingerprints recorded
before it (tests/data/fingerprints.json), per level, CPU vendor and compiler: the float32
approximations behind the reciprocal and square-root estimates differ between Intel and AMD
below AVX-512, and a compiler may contract or order differently, so a record holds only where
all three match (elsewhere test_fingerprints skips).

    python tests/fingerprints.py                 # print this machine's fingerprints, each level
    python tests/fingerprints.py --record        # store them under this machine's keys
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

RECORD = Path(__file__).resolve().parent / "data" / "fingerprints.json"


def _digest(*arrays) -> str:
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def fits() -> dict[str, str]:
    """name -> fingerprint of each short fit, at the level this process runs."""
    import metafast as mf
    from metafast.tasks import GaussianNWay, LinearBinary, Sinusoid

    def supervised(learner, family, iterations, meta_batch):
        losses = learner.fit(family, iterations=iterations, meta_batch=meta_batch, progress=False)
        params = [learner.theta] + ([learner.alpha] if hasattr(learner, "alpha") and learner.alpha is not None else [])
        return _digest(losses, *params)

    sine = Sinusoid(support=10, query=10)
    out = {}
    for threads in (1, 2):
        out[f"reptile-adam-1-64-1-t{threads}"] = supervised(mf.Reptile(
            mf.MLP([1, 64, 1], activation="tanh"), inner_optimizer="adam", inner_lr=1e-2, inner_epochs=3,
            inner_batch=10, seed=1, num_threads=threads), Sinusoid(support=50, query=1), 20, 1)
        out[f"reptile-adam-1-64-64-1-t{threads}"] = supervised(mf.Reptile(
            mf.MLP([1, 64, 64, 1], activation="tanh"), inner_optimizer="adam", inner_lr=1e-2, inner_epochs=2,
            inner_batch=10, seed=2, num_threads=threads), Sinusoid(support=50, query=1), 3, 8)
        out[f"metasgd-bce-50-1-t{threads}"] = supervised(mf.MetaSGD(
            mf.MLP([50, 1], activation="identity", bias=False), loss="bce", meta_optimizer="sgd", seed=3,
            num_threads=threads), LinearBinary(dim=50, support=10, query=10), 20, 32)
        out[f"metasgd-sine-1-40-40-1-t{threads}"] = supervised(mf.MetaSGD(
            mf.MLP([1, 40, 40, 1], activation="relu"), seed=4, num_threads=threads), sine, 20, 25)
    out["maml-3-steps-sigmoid"] = supervised(mf.MAML(
        mf.MLP([1, 24, 24, 1], activation="sigmoid"), inner_steps=3, seed=5), sine, 10, 8)
    out["metasgd-per-step-first-order"] = supervised(mf.MetaSGD(
        mf.MLP([1, 20, 1], activation="tanh"), inner_steps=2, alpha_per_step=True, first_order=True, seed=6),
        sine, 10, 8)
    out["metasgd-5-way-softmax"] = supervised(mf.MetaSGD(
        mf.MLP([8, 32, 5], activation="relu"), loss="softmax_ce", seed=7),
        GaussianNWay(ways=5, dim=8, support=2, query=3), 10, 8)
    out["reptile-sgd-float64"] = supervised(mf.Reptile(
        mf.MLP([1, 16, 1], activation="tanh"), inner_optimizer="sgd", seed=8, dtype="float64"), sine, 10, 4)
    out["convnet-maml"] = supervised(mf.MAML(
        mf.ConvNet((1, 8, 8), channels=(4, 4), outputs=3), loss="softmax_ce", seed=9),
        GaussianNWay(ways=3, dim=64, support=1, query=2), 3, 4)
    rl = mf.rl.MetaSGDRL(mf.MLP([2, 16, 2]), inner_trajectories=4, seed=10)
    rl.fit(iterations=3, meta_batch=4, progress=False)
    out["metasgd-rl-navigation"] = _digest(rl.theta, rl.alpha)
    return out


def key() -> str:
    """The record's key for this process: level, CPU vendor, compiler."""
    import metafast as mf

    info = mf.build_info()
    return f"{info['level']}|{info['vendor']}|{info['compiler']}"


def at_level(level: str) -> dict:
    """{"key": ..., "fits": ...} computed in a child process at a forced level."""
    env = dict(os.environ, METAFAST_CPU=level, METAFAST_TEAMS="exact", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, env=env,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="store this machine's fingerprints")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"key": key(), "fits": fits()}))
        return 0
    import metafast as mf

    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    for level in mf.build_info()["levels_supported"]:
        got = at_level(level)
        print(got["key"])
        for name, value in got["fits"].items():
            stored = record.get(got["key"], {}).get(name)
            print(f"  {name:34s} {value}  {'' if stored is None else 'same' if stored == value else 'DIFFERS: ' + stored}")
        if args.record:
            record[got["key"]] = got["fits"]
    if args.record:
        RECORD.parent.mkdir(exist_ok=True)
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
