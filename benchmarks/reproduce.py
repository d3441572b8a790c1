"""Reproduces the papers' few-shot protocols with metafast and writes docs/results.md: the table
of metafast's MAML, Meta-SGD and Reptile numbers (mean ± 95% CI over held-out tasks) beside the
published ones, the exact settings, and the figures.

    python benchmarks/reproduce.py            # about 17 minutes on 2 cores (the TRPO rows: 12)
    python benchmarks/reproduce.py --quick    # a smoke run: tiny training, nothing written
    python benchmarks/reproduce.py --sections omniglot [--minutes 30 --jobs 2 ...]
                                              # only the Omniglot section (benchmarks/omniglot.py:
                                              # hours), written between its markers in docs/results.md
    python benchmarks/reproduce.py --sections all     # both

Sections: "papers" (the default: the protocols below, which write docs/results.md whole, keeping
an Omniglot block already there) and "omniglot" (benchmarks/omniglot.py's protocol and options;
it replaces only its block, between <!-- omniglot:start --> and <!-- omniglot:end -->).

Protocols (each trains from scratch with seed 0 and evaluates on held-out tasks, seed 123):

- sine, MAML's (Finn et al. 2017, appendix): y = A sin(x - phi), A ~ U[0.1, 5], phi ~ U[0, pi],
  x ~ U[-5, 5]; 5 support points per task in training and evaluation, 5 query points in
  training and 100 in evaluation; MLP 1-40-40-1 ReLU initialised as torch.nn.Linear
  (init="pytorch"; MAML's code draws weights from a normal of std 0.01 instead); one inner
  step of 0.01 in training; meta-batch 25, Adam 1e-3, 70,000 meta-iterations; MSE after 1, 5
  and 10 steps of 0.01.
- multi-step Meta-SGD: MAML's sine protocol with Meta-SGD trained and tested with 5 inner
  steps, alpha initialised to 0.01 (the setting MAML trains routinely), alpha learning at
  its default rate (meta_lr times alpha_init with several inner steps), theta from the
  default initialisation (Glorot with several inner steps), meta-gradients clipped to norm 10.
- sine, Meta-SGD's (Li et al. 2017, Table 1): trained on 5-shot tasks with one inner step,
  meta-batch 4, 60,000 meta-iterations, alpha initialised uniform in [0.005, 0.1] as in the
  paper (MAML beside it with its step of 0.01), the same network; tested on 5-, 10- and 20-shot tasks after one step. A secondary source describes
  that paper's sines as also drawing a frequency; its ranges could not be established, so
  this runs MAML's sines (no frequency).
- 2D navigation (MAML Table 4; Meta-SGD's RL section): metafast's Meta-SGD for RL with its
  defaults (MLP 2-100-100-2 ReLU initialised Glorot, actions in [-1, 1] scaled to velocities
  of at most 0.1 as in the papers' rllab environment, log-std -0.7, alpha 0.0015 on a
  surrogate summed over time steps, GAE advantages with lambda 0.65 on MAML's linear feature
  baseline, Adam 1e-3), 500 meta-iterations of 20 goals x 20 trajectories, meta-trained with
  one inner step; returns (minus the distance, as the MAML code rewards) after 0-3 steps on
  600 held-out goals with 20 trajectories each; beside it the same meta-trained with 2 inner
  steps (inner_steps=2; gae_lambda then defaults to 1), meta-trained with one step on
  the papers' advantages, returns-to-go minus the baseline (gae_lambda=1), and meta-trained
  with TRPO's meta-update (meta_optimizer="trpo", MAML's settings: max_kl 0.01, 10
  conjugate-gradient iterations, damping 1e-5, 15 backtracks of 0.8) with alpha learned in
  the search. These are scored in Meta-SGD's protocol: each step with alpha as learned, on
  20 trajectories. MAML's protocol: TRPO with a fixed inner step (alpha_lr=0) of 0.001 per
  parameter (MAML's 0.1 on a surrogate averaged over time steps), the papers' advantages,
  500 meta-iterations; scored with each adaptation step on 40 trajectories, the step halved
  after the first (alpha_scales=(1, 0.5)), and the return on 40 fresh trajectories.
- Reptile's sine demonstration (Nichol et al. 2018, figure 1): 10 support points, Reptile
  with 32 full-batch SGD inner steps of 0.02, MLP 1-64-64-1 tanh, epsilon 0.1 annealed to 0
  over 30,000 serial meta-iterations; query MSE on 100 points after 0, 1 and 32 steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import metafast as mf
from metafast import plot

sys.path.insert(0, str(Path(__file__).resolve().parent))
import omniglot  # noqa: E402  (benchmarks/omniglot.py)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
EVAL_SEED = 123
# MAML's RL protocol: TRPO's meta-update (its defaults), a fixed inner step (alpha_lr=0) and the
# papers' advantages (returns-to-go minus the linear baseline).
MAML_RL = dict(meta_optimizer="trpo", alpha_init=0.001, alpha_lr=0.0, gae_lambda=1.0)


def sine(support: int, query: int) -> mf.tasks.Sinusoid:
    return mf.tasks.Sinusoid(amplitude=(0.1, 5.0), phase=(0.0, np.pi), x_range=(-5.0, 5.0), support=support,
                             query=query)


def cells(report: mf.EvaluationReport) -> list[str]:
    return [f"{m:.3g} ± {c:.2g}" + (f" ({d:.0%} diverged)" if d else "")
            for m, c, d in zip(report.loss, report.loss_ci95, report.diverged)]


def fit(learner, notes: list[str], name: str, *tasks, **settings) -> float:
    """learner.fit, noting a divergence (the learner keeps its last finite state) instead of
    stopping; returns the seconds it took."""
    started = time.perf_counter()
    try:
        learner.fit(*tasks, progress=False, **settings)
    except mf.TrainingDivergedError as error:
        notes.append(f"{name} diverged at meta-iteration {error.iteration} and is scored as it stood before")
    return time.perf_counter() - started


def verdict(mean: float, published: float, lower_is_better: bool) -> str:
    better = mean <= published if lower_is_better else mean >= published
    return "reached" if better else "**not reached**"


def navigation_verdict(steps: int, mean: float) -> str:
    """Against MAML's Table 4, and after one step against the Meta-SGD paper's -8.64 too."""
    maml = verdict(mean, {0: -40.41, 1: -11.68, 2: -3.33, 3: -3.23}[steps], False)
    return f"{maml} (MAML); {verdict(mean, -8.64, False)} (Meta-SGD)" if steps == 1 else maml


def run(quick: bool) -> tuple[list[list[str]], list[str]]:
    scale = 0.002 if quick else 1.0
    tasks_held_out = 50 if quick else 600
    rows: list[list[str]] = []
    notes: list[str] = []
    model = lambda: mf.MLP([1, 40, 40, 1], activation="relu")  # noqa: E731

    # MAML's sine protocol: MAML, and Meta-SGD on the same protocol.
    started = time.perf_counter()
    maml = mf.MAML(model(), inner_lr=0.01, inner_steps=1, meta_lr=1e-3, init="pytorch", seed=0)
    fit(maml, notes, "MAML (sine)", sine(5, 5), iterations=max(1, round(70_000 * scale)), meta_batch=25)
    report = maml.evaluate(sine(5, 100), num_tasks=tasks_held_out, steps=(1, 5, 10), seed=EVAL_SEED)
    for (steps, published), cell, mean in zip(((1, 0.67), (5, 0.38), (10, 0.35)), cells(report), report.loss):
        rows.append([f"sine 5-shot, MAML's protocol, {steps} step{'s' * (steps > 1)}", "MAML", cell,
                     f"MAML {published} (MAML App. C)", verdict(mean, published, True)])
    # Multi-step Meta-SGD in MAML's setting: 5 inner steps from alpha 0.01.
    # As a user writes MAML's setting: the default initialisation ("glorot" with several steps).
    multi = mf.MetaSGD(model(), loss="mse", inner_steps=5, alpha_init=0.01, meta_lr=1e-3, clip_grad_norm=10.0, seed=0)
    fit(multi, notes, "Meta-SGD with 5 inner steps", sine(5, 5), iterations=max(1, round(70_000 * scale)),
        meta_batch=25)
    report = multi.evaluate(sine(5, 100), num_tasks=tasks_held_out, steps=(5,), seed=EVAL_SEED)
    rows.append([f"sine 5-shot, MAML's protocol, trained and tested with 5 steps (after {multi.iteration:,} "
                 "meta-iterations)", "Meta-SGD", cells(report)[0], "MAML 0.38 (MAML App. C)",
                 verdict(report.loss[0], 0.38, True) if multi.iteration >= round(70_000 * scale) else
                 "**not reached** (diverged)"])
    notes.append(f"MAML sine: {time.perf_counter() - started:.0f} s of training and evaluation")

    # Meta-SGD's Table 1 row for 5-shot training.
    started = time.perf_counter()
    metasgd = mf.MetaSGD(model(), inner_steps=1, alpha_init=(0.005, 0.1), meta_lr=1e-3, init="pytorch", seed=0)
    fit(metasgd, notes, "Meta-SGD (Table 1)", sine(5, 5), iterations=max(1, round(60_000 * scale)), meta_batch=4)
    maml_4 = mf.MAML(model(), inner_lr=0.01, inner_steps=1, meta_lr=1e-3, init="pytorch", seed=0)
    fit(maml_4, notes, "MAML (Table 1)", sine(5, 5), iterations=max(1, round(60_000 * scale)), meta_batch=4)
    for shots in (5, 10, 20):
        for name, learner, published in (("Meta-SGD", metasgd, "Meta-SGD 0.90 ± 0.16" if shots == 5 else None),
                                         ("MAML", maml_4, "MAML 1.13 ± 0.18" if shots == 5 else None)):
            report = learner.evaluate(sine(shots, 100), num_tasks=tasks_held_out, steps=(1,), seed=EVAL_SEED)
            anchor = float(published.split()[1]) if published else None
            rows.append([f"sine, trained 5-shot, tested {shots}-shot, 1 step", name, cells(report)[0],
                         f"{published} (Meta-SGD Table 1)" if published else "not quoted here",
                         verdict(report.loss[0], anchor, True) if anchor else ""])
    notes.append(f"Meta-SGD Table 1: {time.perf_counter() - started:.0f} s")

    # 2D navigation, in both papers' protocols: Meta-SGD's (alpha learned; scored after steps
    # of alpha as learned on 20 trajectories) and MAML's (TRPO, a fixed step; scored after steps
    # on 40 trajectories, the step halved after the first).
    started = time.perf_counter()
    published_nav = {0: "MAML −40.41", 1: "MAML −11.68; Meta-SGD −8.64 ± 0.68 (secondary source)",
                     2: "MAML −3.33", 3: "MAML −3.23"}
    meta_sgd_scoring = dict(trajectories=20)
    maml_scoring = dict(trajectories=40, inner_trajectories=40, alpha_scales=(1, 0.5))
    navigation = (("Meta-SGD (RL)", {}, meta_sgd_scoring),  # the defaults
                  ("Meta-SGD (RL, meta-trained with 2 steps)", dict(inner_steps=2), meta_sgd_scoring),
                  ("Meta-SGD (RL, the papers' advantages, gae_lambda 1)", dict(gae_lambda=1.0), meta_sgd_scoring),
                  ("Meta-SGD (RL, TRPO)", dict(meta_optimizer="trpo"), meta_sgd_scoring),
                  ("MAML's protocol (RL, TRPO, fixed step)", MAML_RL, maml_scoring))
    for label, options, scoring in navigation:
        learner = mf.rl.MetaSGDRL(mf.MLP([2, 100, 100, 2], activation="relu"), env=mf.rl.Navigation2D(), seed=0,
                                  **options)
        seconds = fit(learner, notes, label, iterations=max(1, round(500 * scale)), meta_batch=20)
        report = learner.evaluate(num_tasks=tasks_held_out, steps=(0, 1, 2, 3), seed=EVAL_SEED, **scoring)
        for steps, cell, mean in zip((0, 1, 2, 3), cells(report), report.loss):
            rows.append([f"2D navigation, return after {steps} step{'s' * (steps != 1)}",
                         f"{label}, {seconds:.0f} s of training", cell, f"{published_nav[steps]} (MAML Table 4)",
                         navigation_verdict(steps, mean)])
        if not options:
            rl = learner
    notes.append(f"2D navigation: {time.perf_counter() - started:.0f} s")

    # Reptile's sine demonstration.
    started = time.perf_counter()
    reptile = mf.Reptile(mf.MLP([1, 64, 64, 1], activation="tanh"), inner_optimizer="sgd", inner_lr=0.02,
                         inner_epochs=32, inner_batch=10, epsilon=0.1, epsilon_final=0.0, seed=0)
    fit(reptile, notes, "Reptile", sine(10, 10), iterations=max(1, round(30_000 * scale)), meta_batch=1)
    report = reptile.evaluate(sine(10, 100), num_tasks=tasks_held_out, steps=(0, 1, 32), seed=EVAL_SEED)
    for steps, cell in zip((0, 1, 32), cells(report)):
        rows.append([f"sine 10-shot, Reptile's demonstration, {steps} step{'s' * (steps != 1)}", "Reptile", cell,
                     "a figure, no numbers (Reptile Fig. 1)", ""])
    notes.append(f"Reptile sine: {time.perf_counter() - started:.0f} s")

    if not quick:
        examples = [sine(5, 100).sample(1, seed=10_000 + i) for i in range(3)]
        plot.adaptation_figure(examples, {"MAML": (maml, 10), "Meta-SGD": (metasgd, 1), "Reptile": (reptile, 32)},
                               {"MAML": maml.history, "Meta-SGD": metasgd.history}, str(ROOT / "docs" / "results-sine.png"),
                               family=sine(5, 5))
        plot.navigation_figure(rl, mf.rl.Navigation2D().sample_goals(3, seed=10_000), 1,
                               str(ROOT / "docs" / "results-nav2d.png"))
    return rows, notes


def markdown(rows: list[list[str]], notes: list[str]) -> str:
    info = mf.build_info()
    table = ["| protocol | learner | metafast (mean ± 95% CI) | published | |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    doc = (__doc__ or "")[(__doc__ or "").index("Protocols"):]
    return "\n".join([
        "# metafast against the published results",
        "",
        "Written by `python benchmarks/reproduce.py` (do not edit by hand) on "
        f"{info['cpu']} ({info['level']} level, metafast {info['version']}); "
        + "; ".join(notes) + ".",
        "",
        *table,
        "",
        "MSE for the sine rows (lower is better), the mean return for 2D navigation (higher is",
        "better). \"reached\": metafast's mean is at least as good as the published number.",
        "",
        "## Settings",
        "",
        doc.strip(),
        "",
        "![MAML, Meta-SGD and Reptile adapting to held-out sine tasks](results-sine.png)",
        "",
        "![Meta-SGD for RL before and after one adaptation step](results-nav2d.png)",
        "",
    ])


SECTIONS = ("papers", "omniglot")
DEFAULT_SECTIONS = ("papers",)  # the Omniglot section takes hours: run it when asked


def sections(text: str) -> tuple[str, ...]:
    """--sections: comma-separated names among SECTIONS, or "all"."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if names == ("all",):
        return SECTIONS
    if not names or any(name not in SECTIONS for name in names):
        raise argparse.ArgumentTypeError(f"choose among {', '.join(SECTIONS)} (comma-separated) or all, got {text!r}")
    return tuple(name for name in SECTIONS if name in names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny training, docs/ left alone")
    parser.add_argument("--sections", type=sections, default=DEFAULT_SECTIONS,
                        help="comma-separated: papers (the default), omniglot (hours), or all")
    omniglot.add_arguments(parser)
    args = parser.parse_args(argv)
    if "omniglot" not in args.sections and (args.json or args.save_dir or args.reuse):
        parser.error("--json, --save-dir and --reuse belong to the omniglot section: add --sections omniglot")
    text = block = None
    if "papers" in args.sections:
        rows, notes = run(args.quick)
        text = markdown(rows, notes)
    if "omniglot" in args.sections:
        config = omniglot.config_from(args)
        results = omniglot.run(config, log=lambda line: print(line, file=sys.stderr, flush=True))
        if not args.quick:
            results["figure"] = omniglot.figure(config, RESULTS.parent / "results-omniglot.png")
        block = omniglot.markdown(results)
        if args.json:
            omniglot.write_text_atomically(args.json, json.dumps(results, indent=1) + "\n")
            print(f"wrote {args.json}", file=sys.stderr)
    print("\n".join(part for part in (text, block) if part is not None))
    if args.quick:
        return
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    if text is not None:
        # The papers' document is written whole; the Omniglot block goes at its end: this run's,
        # or the one the file already holds.
        kept = block if block is not None else omniglot.existing_block(current)
        text = text if kept is None else omniglot.replace_block(text, kept)
    else:
        # Only the Omniglot block changes: the rest of the file stays as it is.
        text = omniglot.replace_block(current, block)
    omniglot.write_text_atomically(RESULTS, text)  # atomically: readers never see half a file
    print(f"wrote {RESULTS.relative_to(ROOT) if RESULTS.is_relative_to(ROOT) else RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
