"""2D navigation meta-trained with TRPO's meta-update (MetaSGDRL(meta_optimizer="trpo")), in
the papers' protocol: MLP 2-100-100-2 ReLU, 500 meta-iterations of 20 goals x 20
trajectories, evaluated on 600 held-out goals (seed 123) with 20 fresh trajectories each
after 0-3 adaptation steps, and in MAML's evaluation (each step on 40 trajectories, the step
halved after the first; scored on 40). MAML's Table 4 (TRPO, fixed step): -40.41, -11.68,
-3.33, -3.23; the Meta-SGD paper: -8.64 after one step.

    python benchmarks/trpo_navigation.py                          # Meta-SGD: alpha learned
    python benchmarks/trpo_navigation.py --alpha-lr 0             # MAML's fixed inner step
    python benchmarks/trpo_navigation.py --alpha-lr 0 --alpha-init 0.001 --inner-steps 2

A run takes 6-11 minutes on 2 cores; the results of record are in
benchmarks/results-*-trpo-*.txt.
"""

from __future__ import annotations

import argparse
import time

import metafast as mf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--alpha-init", type=float, default=0.0015)
    parser.add_argument("--alpha-lr", type=float, default=None, help="0: alpha fixed (MAML's protocol)")
    parser.add_argument("--max-kl", type=float, default=0.01)
    parser.add_argument("--gae-lambda", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=600, help="held-out goals")
    parser.add_argument("--save", help="write the trained learner here")
    args = parser.parse_args(argv)
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 100, 100, 2], activation="relu"), meta_optimizer="trpo",
                              inner_steps=args.inner_steps, alpha_init=args.alpha_init, alpha_lr=args.alpha_lr,
                              max_kl=args.max_kl, gae_lambda=args.gae_lambda, seed=args.seed)
    started = time.perf_counter()
    learner.fit(iterations=args.iterations, meta_batch=20, progress=False)
    seconds = time.perf_counter() - started
    if args.save:
        learner.save(args.save)
    info = mf.build_info()
    print(f"TRPO, inner_steps={args.inner_steps}, alpha_init={args.alpha_init}, alpha_lr={learner.alpha_lr}, "
          f"max_kl={args.max_kl}, gae_lambda={learner.gae_lambda}, seed {args.seed}: {args.iterations} "
          f"meta-iterations in {seconds:.0f} s on {learner.num_threads} threads ({info['cpu']}, {info['level']})")
    print("Meta-SGD's evaluation: each step with alpha as trained, on 20 trajectories")
    print(learner.evaluate(num_tasks=args.tasks, steps=(0, 1, 2, 3), trajectories=20, seed=123))
    print("MAML's evaluation: each step on 40 trajectories, the step halved after the first")
    print(learner.evaluate(num_tasks=args.tasks, steps=(0, 1, 2, 3), trajectories=40, seed=123,
                           inner_trajectories=40, alpha_scales=(1, 0.5)))


if __name__ == "__main__":
    main()
