"""Omniglot few-shot classification: Lake et al. (2015)'s minimal condition with the
meta-learning literature's settings, metafast's meta-learners against simple baselines on the
same test episodes; a section of ``benchmarks/reproduce.py``:

    python benchmarks/reproduce.py --sections omniglot                 # 30 minutes per training
    python benchmarks/reproduce.py --sections omniglot --quick         # a smoke run, nothing written
    python benchmarks/reproduce.py --sections omniglot --iterations 500 --jobs 2 --threads 1

Protocol:

- Two directions. "small1 → new alphabets of small2": meta-train on the alphabets of Lake et
  al.'s minimal background set small1, each character in four quarter turns (each turn a class
  of its own, the literature's augmentation); test on the alphabets of small2 that small1 lacks,
  unturned. And the reverse. The test alphabets are the set difference of
  ``metafast.datasets.omniglot_subsets()``.
- Test settings: 5-way 1-shot, 5-way 5-shot, 20-way 1-shot, 20-way 5-shot (characters drawn
  from all the test alphabets together), and 20-way 1-shot within one alphabet (Lake et al.'s
  task), ``TEST_QUERY`` (5) query images per class.
- Learners: Meta-SGD, MAML (second order), first-order MAML and Reptile, each with Conv-4 (MAML's
  Omniglot network: ``mf.ConvNet``'s defaults) and with MAML's "no conv" MLP
  784-256-128-64-64-ways (ReLU, but without the batch normalisation MAML's MLP had).
  Hyperparameters: ``SETTINGS`` below, with their sources.
- One training per (direction, ways, learner, network), on 1-shot episodes (Reptile: its
  paper's 10-shot training sets, ``train_shots``), for a time budget (``--minutes``) or a count
  of meta-iterations (``--iterations``); each is tested at 1 and 5 shots, the 20-way ones also
  within one alphabet.
- Every method is scored on the same episodes: ``family.sample(n, seed=EVAL_SEED)`` for each
  (direction, test setting), drawn alike in every process (each result records the SHA-256 of
  the episodes it was scored on, and the table refuses results on different ones). Accuracy
  is the mean over episodes of the query accuracy, with its 95% interval
  (1.96 * std / sqrt(n), as metafast's EvaluationReport).
- Baselines, per episode: nearest neighbour and nearest class mean in pixels (Euclidean); the
  nearest class mean in the features each meta-trained network feeds its output layer (a
  ProtoNet-style readout of the meta-learned theta, unadapted); and Conv-4 trained from scratch
  on the support set alone (``SCRATCH``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

import metafast as mf

EVAL_SEED = 123  # reproduce.py's: the held-out episodes of every protocol
TRAIN_SEED = 0   # every learner's seed (its initial theta and its training task stream)
TEST_QUERY = 5   # query images per class in the test episodes (5-way: 25 queries, 20-way: 100 per episode)
MARK_START, MARK_END = "<!-- omniglot:start -->", "<!-- omniglot:end -->"


# ---------------------------------------------------------------------------------------------
# The settings table: every hyperparameter of every learner, with where it comes from.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One learner's hyperparameters at one number of ways."""

    meta_batch: int                 # tasks per meta-iteration
    inner_lr: float                 # MAML's step size alpha; Meta-SGD's alpha_init; Reptile's inner Adam rate
    inner_steps: int                # inner updates per task in meta-training
    test_steps: int                 # adaptation steps at test
    train_shots: int = 1            # support images per class in the meta-training episodes
    train_query: int = 1            # query images per class there (1-shot training: 1 query image)
    meta_lr: Optional[float] = 1e-3  # Adam's rate on theta (Meta-SGD's alpha: metafast's default); None: Reptile
    inner_batch: Optional[int] = None       # Reptile: rows per inner update in meta-training
    test_batch: Optional[int] = None        # Reptile: rows per inner update at test
    epsilon: Optional[tuple[float, float]] = None  # Reptile: outer step size, annealed linearly from, to
    adam_betas: Optional[tuple[float, float]] = None  # Reptile: its inner Adam's betas
    source: str = ""


_MAML = "Finn et al. 2017, sec. 5.2 (meta-lr: their code's Adam 1e-3)"
_FOMAML = "MAML's (" + _MAML + "), first order"
_MAML_5_TEST = "; the paper tests 5-way with 3 steps, this protocol with the training count"
_METASGD = ("Li et al. 2017's learner with MAML's steps and meta-batch; alpha_init = MAML's step size, alpha's "
            "rate metafast's default")
# 20-way: one inner step of 0.4 and Adam 3e-3 instead of MAML's 5 steps of 0.1 and 1e-3. Within the
# 30-minute budget on 2 cores these learn faster: a sweep of 15 settings (Intel Xeon, avx512, 2
# threads each, 20-way 1-shot within an alphabet on small2's new alphabets after 200 s of
# meta-training) gave Meta-SGD 1 step 0.4 / 3e-3 0.52, the same at 1e-3 0.45 (alpha 0.1: 0.39),
# MAML 1 step 0.4 / 3e-3 0.49, first-order 0.47, MAML 5 steps of 0.1 / 1e-3 0.35 (300 iterations).
_BUDGET_20 = "; 20-way: 1 step of 0.4 and meta-lr 3e-3, tuned for the 30-minute budget (see the sweep above)"
_REPTILE = ("Nichol et al. 2018, App. A and openai/supervised-reptile's Omniglot commands: train-shots 10, "
            "inner Adam with beta1 = 0, outer step 1 annealed to 0; the inner Adam state starts fresh for every "
            "task (their code carries it from task to task)")

SETTINGS: dict[str, dict[int, Setting]] = {
    "metasgd": {
        5: Setting(meta_batch=32, inner_lr=0.4, inner_steps=1, test_steps=1, source=_METASGD),
        20: Setting(meta_batch=16, inner_lr=0.4, inner_steps=1, test_steps=1, meta_lr=3e-3,
                    source=_METASGD + _BUDGET_20),
    },
    "maml": {
        5: Setting(meta_batch=32, inner_lr=0.4, inner_steps=1, test_steps=1, source=_MAML + _MAML_5_TEST),
        20: Setting(meta_batch=16, inner_lr=0.4, inner_steps=1, test_steps=1, meta_lr=3e-3, source=_MAML + _BUDGET_20),
    },
    "fomaml": {  # MAML's Omniglot settings with the first-order meta-gradient (the paper shows it on MiniImagenet)
        5: Setting(meta_batch=32, inner_lr=0.4, inner_steps=1, test_steps=1, source=_FOMAML + _MAML_5_TEST),
        20: Setting(meta_batch=16, inner_lr=0.4, inner_steps=1, test_steps=1, meta_lr=3e-3,
                    source=_FOMAML + _BUDGET_20),
    },
    "reptile": {  # inner_steps: one shuffled pass over the 10-shot training set in minibatches of inner_batch
        5: Setting(meta_batch=5, inner_lr=1e-3, inner_steps=5, test_steps=50, train_shots=10, meta_lr=None,
                   inner_batch=10, test_batch=5, epsilon=(1.0, 0.0), adam_betas=(0.0, 0.999), source=_REPTILE),
        20: Setting(meta_batch=5, inner_lr=5e-4, inner_steps=10, test_steps=50, train_shots=10, meta_lr=None,
                    inner_batch=20, test_batch=10, epsilon=(1.0, 0.0), adam_betas=(0.0, 0.999), source=_REPTILE),
    },
}
# Conv-4 from scratch on each test episode's support set: a fixed random initialisation (seed 0,
# never meta-trained), full-batch Adam at its usual rate for a fixed number of steps; not tuned.
SCRATCH = dict(optimizer="adam", lr=1e-3, steps=100, episodes=200)

LEARNERS = {"metasgd": "Meta-SGD", "maml": "MAML", "fomaml": "first-order MAML", "reptile": "Reptile"}
MODELS = {"conv": "Conv-4", "mlp": "MLP"}
CONV_CHANNELS, MLP_HIDDEN = (64, 64, 64, 64), (256, 128, 64, 64)  # MAML's networks
# --quick: small networks, 2 meta-iterations of meta-batch 2, few episodes, 5 test steps at most.
QUICK_CONV_CHANNELS, QUICK_MLP_HIDDEN = (8, 8, 8, 8), (32, 16)
QUICK = dict(iterations=2, episodes=6, scratch_episodes=3, scratch_steps=5)
# Lake et al. 2015 (Science), the minimal condition's 20-way 1-shot within an alphabet, error rates
# in percent, as the issue quotes them.
# Keyed by the background set trained on (people: no training set).
PUBLISHED_WITHIN = {"small1": (("deep convolutional network trained on small1 (Lake et al. 2015)", 24.0),
                               ("Bayesian Program Learning trained on small1 (Lake et al. 2015)", 4.3),
                               ("people (Lake et al. 2015)", 4.5)),
                    "small2": (("deep convolutional network trained on small2 (Lake et al. 2015)", 22.3),
                               ("Bayesian Program Learning trained on small2 (Lake et al. 2015)", 4.0),
                               ("people (Lake et al. 2015)", 4.5))}
TARGET_ERROR = 20.0  # the target: the best meta-learner at most 20% error on 20-way 1-shot within one alphabet


# ---------------------------------------------------------------------------------------------
# Directions, test settings, configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Direction:
    key: str                        # the meta-training subset, "small1" or "small2"
    test_subset: str
    train_alphabets: tuple[str, ...]
    test_alphabets: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.key} → new alphabets of {self.test_subset}"


def directions() -> dict[str, Direction]:
    """Both directions, the test alphabets those of the other subset that the training one lacks."""
    subsets = mf.datasets.omniglot_subsets()
    result = {}
    for train, test in (("small1", "small2"), ("small2", "small1")):
        new = tuple(a for a in subsets[test] if a not in set(subsets[train]))
        result[train] = Direction(train, test, tuple(subsets[train]), new)
    return result


@dataclass(frozen=True)
class TestSetting:
    ways: int
    shots: int
    within: bool = False

    @property
    def key(self) -> str:
        return f"{self.ways}way{self.shots}shot" + ("-within" if self.within else "")

    @property
    def label(self) -> str:
        return f"{self.ways}-way {self.shots}-shot" + (" within one alphabet" if self.within else "")


TEST_SETTINGS = (TestSetting(5, 1), TestSetting(5, 5), TestSetting(20, 1), TestSetting(20, 5),
                 TestSetting(20, 1, within=True))


@dataclass(frozen=True)
class Config:
    """What one run of the section does."""

    minutes: Optional[float] = 30.0      # time budget per training (None: none)
    target_minutes: Optional[float] = None  # the budget of the target's training, 20-way Meta-SGD Conv-4 (None: minutes)
    iterations: Optional[int] = None     # meta-iterations per training (None: as many as the budget allows)
    episodes: int = 1000                 # test episodes per (direction, test setting)
    scratch_episodes: int = SCRATCH["episodes"]  # the first ones of those, for Conv-4 from scratch
    scratch_steps: int = SCRATCH["steps"]
    jobs: int = 1                        # trainings at a time, each in its own process
    threads: Optional[int] = None        # threads per learner (None: the cores over jobs)
    directions: tuple[str, ...] = ("small1", "small2")
    learners: tuple[str, ...] = tuple(LEARNERS)
    models: tuple[str, ...] = tuple(MODELS)
    save_dir: Optional[str] = None       # where trained learners go (and come from, with reuse)
    reuse: bool = False                  # load a learner saved in save_dir instead of training it
    quick: bool = False                  # small networks, tiny meta-batches, few test steps

    def __post_init__(self) -> None:
        if self.minutes is None and self.iterations is None:
            raise ValueError("a training needs a time budget (minutes) or a count of iterations")
        if self.jobs < 1 or self.episodes < 2:
            raise ValueError("jobs must be >= 1 and episodes >= 2")
        for name, values, known in (("directions", self.directions, ("small1", "small2")),
                                    ("learners", self.learners, LEARNERS), ("models", self.models, MODELS)):
            unknown = [v for v in values if v not in known]
            if unknown or not values:
                raise ValueError(f"{name} must be some of {', '.join(known)}, got {', '.join(values) or 'none'}")

    @property
    def learner_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.jobs)


def setting_for(learner: str, ways: int, config: Config) -> Setting:
    """The table's setting, scaled down for a quick run (meta-batch 2, at most 5 test steps)."""
    setting = SETTINGS[learner][ways]
    if config.quick:
        setting = replace(setting, meta_batch=min(setting.meta_batch, 2), test_steps=min(setting.test_steps, 5))
    return setting


# ---------------------------------------------------------------------------------------------
# Networks, learners, families, episodes
# ---------------------------------------------------------------------------------------------
def network(model: str, ways: int, quick: bool = False) -> Any:
    if model == "conv":
        return mf.ConvNet((1, 28, 28), channels=QUICK_CONV_CHANNELS if quick else CONV_CHANNELS, outputs=ways)
    return mf.MLP([784, *(QUICK_MLP_HIDDEN if quick else MLP_HIDDEN), ways], activation="relu")


def build_learner(learner: str, setting: Setting, net: Any, threads: int, ways: int) -> Any:
    common = dict(loss="softmax_ce", seed=TRAIN_SEED, num_threads=threads)
    if learner == "metasgd":
        return mf.MetaSGD(net, inner_steps=setting.inner_steps, alpha_init=setting.inner_lr, meta_lr=setting.meta_lr,
                          **common)
    if learner in ("maml", "fomaml"):
        return mf.MAML(net, inner_lr=setting.inner_lr, inner_steps=setting.inner_steps, meta_lr=setting.meta_lr,
                       first_order=learner == "fomaml", **common)
    rows = ways * setting.train_shots
    epochs, remainder = divmod(setting.inner_steps * setting.inner_batch, rows)
    if remainder or epochs < 1 or rows % setting.inner_batch:
        raise ValueError(f"Reptile's {setting.inner_steps} inner steps of {setting.inner_batch} rows are not whole "
                         f"passes over {rows} rows")
    return mf.Reptile(net, inner_optimizer="adam", inner_lr=setting.inner_lr, inner_epochs=epochs,
                      inner_batch=setting.inner_batch, epsilon=setting.epsilon[0], epsilon_final=setting.epsilon[1],
                      adam_betas=setting.adam_betas, shuffle=True, **common)


def tester(learner: str, trained: Any, setting: Setting) -> Any:
    """The learner that adapts at test: the trained one, or for Reptile the same with the test
    minibatch size (its paper's eval batch), theta copied."""
    if learner != "reptile":
        return trained
    clone = mf.Reptile(trained.model, loss="softmax_ce", inner_optimizer="adam", inner_lr=setting.inner_lr,
                       inner_epochs=1, inner_batch=setting.test_batch, adam_betas=setting.adam_betas, shuffle=True,
                       seed=TRAIN_SEED, num_threads=trained.num_threads)
    clone.theta = trained.theta
    return clone


# Families are cached (a few: each holds its subset's images twice); episodes are not (a
# thousand 20-way 5-shot episodes take 1.25 GB).
@lru_cache(maxsize=4)
def training_family(direction: Direction, ways: int, setting: Setting) -> mf.tasks.Omniglot:
    return mf.tasks.Omniglot(direction.train_alphabets, subset=direction.key, ways=ways, shots=setting.train_shots,
                             query=setting.train_query, rotations=4)


@lru_cache(maxsize=6)
def test_family(direction: Direction, test: TestSetting) -> mf.tasks.Omniglot:
    return mf.tasks.Omniglot(direction.test_alphabets, subset=direction.test_subset, ways=test.ways, shots=test.shots,
                             query=TEST_QUERY, within_alphabet=test.within)


def episodes(direction: Direction, test: TestSetting, count: int, threads: Optional[int] = None) -> mf.TaskBatch:
    """The test episodes of one cell: the same for every method, in every process."""
    return test_family(direction, test).sample(count, seed=EVAL_SEED, dtype="float32", num_threads=threads)


def fingerprint(batch: mf.TaskBatch) -> str:
    digest = hashlib.sha256()
    for array in (batch.x_support, batch.y_support, batch.x_query, batch.y_query):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return digest.hexdigest()


def short_alphabets(direction: Direction, ways: int) -> list[str]:
    """Test alphabets with fewer than ``ways`` characters: never drawn within one alphabet."""
    data = mf.datasets.load_omniglot(direction.test_subset)
    return [a for a in direction.test_alphabets if len(data.classes([a])) < ways]


# ---------------------------------------------------------------------------------------------
# Features of a trained network: the values its output layer reads
# ---------------------------------------------------------------------------------------------
def feature_network(net: Any, theta: np.ndarray) -> tuple[Any, np.ndarray]:
    """(network, parameters) whose forward pass gives the features ``net`` feeds its output
    layer: for a ConvNet the same blocks with an identity output layer of ``net.features``
    units; for an MLP the MLP without its last layer, the last hidden layer keeping its
    activation."""
    if isinstance(net, mf.ConvNet):
        width = net.features
        body = mf.ConvNet(net.input_shape, net.channels, outputs=width, kernel_size=net.kernel_size,
                          stride=net.stride, padding=net.padding, pool=net.pool, batch_norm=net.batch_norm,
                          batch_norm_scale=net.batch_norm_scale, batch_norm_eps=net.batch_norm_eps,
                          activation=net.activation, head=net.head, bias=net.bias)
        layers = net.unflatten(theta)
        identity = {"weight": np.eye(width, dtype=theta.dtype)}
        if "bias" in layers[-1]:
            identity["bias"] = np.zeros(width, dtype=theta.dtype)
        return body, body.flatten([*layers[:-1], identity])
    if net.num_layers < 2:
        raise ValueError("an MLP without hidden layers has no features")
    body = mf.MLP(net.sizes[:-1], activation=net.activation, output=net.activation, bias=net.bias)
    return body, body.flatten(net.unflatten(theta)[:-1])


def features(body: Any, params: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The features of the rows ``x`` (batch normalisation over these rows together)."""
    return body.forward(params, x.reshape(len(x), -1))


# ---------------------------------------------------------------------------------------------
# Per-episode baselines
# ---------------------------------------------------------------------------------------------
def nearest(support: np.ndarray, labels: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The label of the nearest support row (Euclidean) of each query row; ties: the first."""
    s, q = support.astype(np.float64), query.astype(np.float64)
    distances = (q * q).sum(1)[:, None] - 2.0 * q @ s.T + (s * s).sum(1)[None, :]
    return labels[np.argmin(distances, axis=1)]


def class_means(support: np.ndarray, labels: np.ndarray, ways: int) -> tuple[np.ndarray, np.ndarray]:
    means = np.stack([support[labels == c].astype(np.float64).mean(0) for c in range(ways)])
    return means, np.arange(ways)


def pixel_nn(xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, ways: int) -> np.ndarray:
    return nearest(xs.reshape(len(xs), -1), ys, xq.reshape(len(xq), -1))


def pixel_ncm(xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, ways: int) -> np.ndarray:
    return nearest(*class_means(xs.reshape(len(xs), -1), ys, ways), xq.reshape(len(xq), -1))


def feature_ncm(body: Any, params: np.ndarray) -> Callable[..., np.ndarray]:
    """Nearest class mean in a network's features, support and query rows passed together."""
    def predict(xs: np.ndarray, ys: np.ndarray, xq: np.ndarray, ways: int) -> np.ndarray:
        both = features(body, params, np.concatenate([xs.reshape(len(xs), -1), xq.reshape(len(xq), -1)]))
        return nearest(*class_means(both[:len(xs)], ys, ways), both[len(xs):])
    return predict


def correct_counts(method: Callable[..., np.ndarray], batch: mf.TaskBatch, ways: int) -> np.ndarray:
    """Correct query predictions of ``method(xs, ys, xq, ways)`` in each episode."""
    return np.array([int((method(batch.x_support[t], batch.y_support[t], batch.x_query[t], ways)
                          == batch.y_query[t]).sum()) for t in range(batch.num_tasks)], dtype=np.int64)


def summary(correct: np.ndarray, query: int, episodes_sha256: str, **extra: Any) -> dict[str, Any]:
    """Mean query accuracy over the episodes and its 95% half-width, as EvaluationReport
    computes them (1.96 * std(ddof=1) / sqrt(n)), with the counts they come from and the
    SHA-256 of the episodes they were scored on."""
    accuracy = np.asarray(correct, dtype=np.float64) / query
    return dict(accuracy=float(accuracy.mean()),
                ci95=float(mf.evaluation.Z_95 * accuracy.std(ddof=1) / np.sqrt(len(accuracy))),
                episodes=int(len(accuracy)), query=int(query), correct=[int(c) for c in correct],
                episodes_sha256=episodes_sha256, **extra)


def learner_counts(learner: Any, batch: mf.TaskBatch, steps: int) -> tuple[np.ndarray, int]:
    """(correct query predictions per episode after ``steps`` adaptation steps, episodes whose
    adaptation diverged: scored 0)."""
    report = learner.evaluate(batch, steps=(steps,))
    accuracy = report.task_accuracies[:, 0]
    diverged = ~np.isfinite(report.task_losses[:, 0]) | ~np.isfinite(accuracy)
    correct = np.where(diverged, 0, np.rint(np.nan_to_num(accuracy) * batch.query_size)).astype(np.int64)
    return correct, int(diverged.sum())


# ---------------------------------------------------------------------------------------------
# Jobs: a training (then its evaluation), or the baselines of one test cell
# ---------------------------------------------------------------------------------------------
def training_name(direction: str, ways: int, learner: str, model: str) -> str:
    return f"omniglot-{direction}-{ways}way-{learner}-{model}"


def is_target(ways: int, learner: str, model: str) -> bool:
    """The training the target is judged on: the best meta-learner of the settings sweep at 20 ways."""
    return (ways, learner, model) == (20, "metasgd", "conv")


def train(learner: Any, family: Any, setting: Setting, config: Config, target: bool = False) -> dict[str, Any]:
    """Meta-trains for the budget or the count of iterations; the record of it. A budget stops
    training between the core's chunks (about a tenth of a second); Reptile, whose outer step
    anneals over the planned iterations, plans them from the pace of a few probe iterations (on
    a copy, counted in the budget)."""
    started = time.perf_counter()
    minutes = config.target_minutes if target and config.target_minutes is not None else config.minutes
    deadline = None if minutes is None else started + 60.0 * minutes
    planned = config.iterations
    if planned is None:
        planned = 10**12
        if setting.epsilon is not None:
            probe, count = copy.deepcopy(learner), 3
            probe_started = time.perf_counter()
            probe.fit(family, iterations=count, meta_batch=setting.meta_batch, progress=False, on_divergence="skip")
            pace = (time.perf_counter() - probe_started) / count
            planned = max(1, int((deadline - time.perf_counter()) / pace))
    stop = None if deadline is None else (lambda *_: time.perf_counter() >= deadline)
    history = learner.fit(family, iterations=planned, meta_batch=setting.meta_batch, progress=False, callback=stop,
                          on_divergence="skip")
    seconds = time.perf_counter() - started
    return dict(iterations=int(learner.iteration), seconds=seconds, threads=learner.num_threads,
                planned=None if planned == 10**12 else int(planned), skipped=int(np.isnan(history).sum()),
                final_loss=float(np.nanmean(history[-50:])) if np.isfinite(history).any() else None)


def run_training(config: Config, direction_key: str, ways: int, learner_key: str, model: str) -> dict[str, Any]:
    direction = directions()[direction_key]
    setting = setting_for(learner_key, ways, config)
    threads = config.learner_threads
    net = network(model, ways, config.quick)
    name = training_name(direction_key, ways, learner_key, model)
    saved = Path(config.save_dir) / f"{name}.npz" if config.save_dir else None
    record_path = saved.with_suffix(".json") if saved else None
    if config.reuse and saved is not None and saved.exists() and record_path.exists():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("setting") != json.loads(json.dumps(asdict(setting))):
            raise ValueError(f"{saved} was trained with other settings than this run's ({record.get('setting')}): "
                             "train it again (leave out --reuse) or use another --save-dir")
        learner = mf.load(saved, num_threads=threads)
        record = dict(record, reused=True)
    else:
        learner = build_learner(learner_key, setting, net, threads, ways)
        record = train(learner, training_family(direction, ways, setting), setting, config,
                       target=is_target(ways, learner_key, model))
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            learner.save(saved)
            write_text_atomically(record_path, json.dumps(dict(record, setting=asdict(setting)), indent=1))
    evaluating = time.perf_counter()
    adapting = tester(learner_key, learner, setting)
    readout = feature_ncm(*feature_network(learner.model, learner.theta))
    cells = {}
    for test in TEST_SETTINGS:
        if test.ways != ways:
            continue
        batch = episodes(direction, test, config.episodes, threads)
        sha = fingerprint(batch)
        correct, diverged = learner_counts(adapting, batch, setting.test_steps)
        cells[test.key] = {f"{learner_key}-{model}": summary(correct, batch.query_size, sha, diverged=diverged),
                           f"{learner_key}-{model}-features": summary(correct_counts(readout, batch, ways),
                                                                      batch.query_size, sha)}
    return dict(kind="training", direction=direction_key, ways=ways, learner=learner_key, model=model,
                name=name, record=record, evaluation_seconds=time.perf_counter() - evaluating, cells=cells)


def run_baselines(config: Config, direction_key: str, test_key: str) -> dict[str, Any]:
    direction = directions()[direction_key]
    test = next(t for t in TEST_SETTINGS if t.key == test_key)
    threads = config.learner_threads
    started = time.perf_counter()
    batch = episodes(direction, test, config.episodes, threads)
    sha = fingerprint(batch)
    cell = {"pixel-nn": summary(correct_counts(pixel_nn, batch, test.ways), batch.query_size, sha),
            "pixel-ncm": summary(correct_counts(pixel_ncm, batch, test.ways), batch.query_size, sha)}
    subset = batch[:min(config.scratch_episodes, batch.num_tasks)]
    scratch = mf.Reptile(network("conv", test.ways, config.quick), loss="softmax_ce", inner_optimizer=SCRATCH["optimizer"],
                         inner_lr=SCRATCH["lr"], inner_epochs=1, inner_batch=test.ways * test.shots, seed=TRAIN_SEED,
                         num_threads=threads)
    correct, diverged = learner_counts(scratch, subset, config.scratch_steps)
    # Scored on the first episodes of the batch: the record names the whole batch's SHA-256.
    cell["scratch-conv"] = summary(correct, batch.query_size, sha, diverged=diverged, steps=config.scratch_steps,
                                   of_episodes=batch.num_tasks)
    return dict(kind="baselines", direction=direction_key, test=test_key, seconds=time.perf_counter() - started,
                cells={test_key: cell})


def _run_job(job: tuple[Any, ...]) -> dict[str, Any]:
    """One job in whichever process runs it (a top-level function: the pool pickles it by name)."""
    kind, config, *arguments = job
    return (run_training if kind == "training" else run_baselines)(config, *arguments)


def plan(config: Config) -> list[tuple[Any, ...]]:
    """Every job, the costliest first (20-way trainings, second order before first order)."""
    cost = {"maml": 4, "metasgd": 4, "reptile": 2, "fomaml": 1}
    jobs: list[tuple[Any, ...]] = []
    for direction in config.directions:
        for ways in (20, 5):
            for learner in sorted(config.learners, key=lambda name: -cost[name]):
                for model in config.models:
                    jobs.append(("training", config, direction, ways, learner, model))
    jobs += [("baselines", config, direction, test.key) for direction in config.directions for test in TEST_SETTINGS]
    return jobs


def figure(config: Config, path: Path) -> Optional[str]:
    """Draws three held-out 5-way 1-shot episodes with the predictions of the 5-way Meta-SGD
    Conv-4 meta-trained on small1 (loaded from ``config.save_dir``) to ``path``; the file's
    name, or None without that learner."""
    from metafast import plot

    saved = Path(config.save_dir or ".") / f"{training_name('small1', 5, 'metasgd', 'conv')}.npz"
    if config.save_dir is None or not saved.exists():
        return None
    learner = mf.load(saved)
    setting = setting_for("metasgd", 5, config)
    batch = episodes(directions()["small1"], TestSetting(5, 1), 3)
    predictions = []
    for t in range(batch.num_tasks):
        theta = learner.adapt(batch.x_support[t], batch.y_support[t], steps=setting.test_steps)
        predictions.append(learner.predict(batch.x_query[t], theta).argmax(axis=1))
    shape = (batch.num_tasks, -1, 1, 28, 28)
    plot.image_episodes(batch.x_support.reshape(shape), batch.y_support, batch.x_query.reshape(shape), batch.y_query,
                        np.array(predictions), str(path))
    return path.name


def run(config: Config, log: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Runs every job (in ``config.jobs`` processes) and gathers the results; they do not
    depend on the number of processes (with ``iterations`` and no budget, bit for bit)."""
    started = time.perf_counter()
    jobs = plan(config)
    if config.jobs == 1:
        results = []
        for job in jobs:
            results.append(_run_job(job))
            log(_described(results[-1]))
    else:
        with ProcessPoolExecutor(max_workers=config.jobs, mp_context=get_context("spawn")) as pool:
            results = []
            for result in pool.map(_run_job, jobs):
                results.append(result)
                log(_described(result))
    return gather(config, results, time.perf_counter() - started)


def _described(result: dict[str, Any]) -> str:
    if result["kind"] == "training":
        record = result["record"]
        return (f"omniglot: {result['name']}: {record['iterations']} meta-iterations in {record['seconds']:.0f} s, "
                f"evaluated in {result['evaluation_seconds']:.0f} s")
    return f"omniglot: baselines {result['direction']} {result['test']}: {result['seconds']:.0f} s"


def gather(config: Config, results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """The JSON record of a run: per direction its trainings and, per test setting, every
    method's result (checked to be on the same episodes)."""
    info = mf.build_info()
    out: dict[str, Any] = dict(
        machine=dict(cpu=info["cpu"], level=info["level"], version=info["version"], cores=os.cpu_count()),
        config=asdict(config), eval_seed=EVAL_SEED, test_query=TEST_QUERY, seconds=seconds,
        settings={learner: {str(ways): asdict(s) for ways, s in table.items()} for learner, table in SETTINGS.items()},
        scratch=dict(SCRATCH, steps=config.scratch_steps, episodes=config.scratch_episodes), directions={})
    every = directions()
    for key in config.directions:
        direction = every[key]
        entry = dict(name=direction.name, train_alphabets=list(direction.train_alphabets),
                     test_alphabets=list(direction.test_alphabets),
                     short_for_within=short_alphabets(direction, 20), trainings={}, cells={})
        for result in results:
            if result["direction"] != key:
                continue
            if result["kind"] == "training":
                entry["trainings"][result["name"]] = dict(result["record"], ways=result["ways"],
                                                          learner=result["learner"], model=result["model"],
                                                          evaluation_seconds=result["evaluation_seconds"])
            for test_key, methods in result["cells"].items():
                entry["cells"].setdefault(test_key, {}).update(methods)
        for test_key, methods in entry["cells"].items():
            prints = {m["episodes_sha256"] for m in methods.values()}
            if len(prints) != 1:
                raise RuntimeError(f"omniglot {key} {test_key}: the methods were scored on different episodes")
        out["directions"][key] = entry
    return out


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------
def method_label(method: str) -> str:
    if method == "pixel-nn":
        return "baseline: nearest neighbour in pixels"
    if method == "pixel-ncm":
        return "baseline: nearest class mean in pixels"
    if method == "scratch-conv":
        return "baseline: Conv-4 from scratch on the support set"
    learner, model, *readout = method.split("-")
    name = f"{LEARNERS[learner]}, {MODELS[model]}"
    return f"baseline: nearest class mean in the features of {name}" if readout else f"**{name}**"


def _order(methods: dict[str, Any]) -> list[str]:
    learners = [m for m in methods if not m.endswith("-features") and "-" in m and m.split("-")[0] in LEARNERS]
    key = lambda m: (list(LEARNERS).index(m.split("-")[0]), list(MODELS).index(m.split("-")[1]))  # noqa: E731
    learners.sort(key=key)
    readouts = sorted((m for m in methods if m.endswith("-features")), key=key)
    return learners + [m for m in ("pixel-nn", "pixel-ncm") if m in methods] + readouts + \
        [m for m in ("scratch-conv",) if m in methods]


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def verdicts(entry: dict[str, Any]) -> list[str]:
    lines = []
    within = entry["cells"].get(TestSetting(20, 1, True).key, {})
    learners = {m: r for m, r in within.items() if m in _learner_methods(within)}
    if learners:
        best = max(learners, key=lambda m: learners[m]["accuracy"])
        error = 100 * (1 - learners[best]["accuracy"])
        status = "reached" if error <= TARGET_ERROR else "**not reached**"
        lines.append(f"- Best meta-learner ≤ {TARGET_ERROR:.0f}% error on 20-way 1-shot within one alphabet: {status} "
                     f"({method_label(best).strip('*')}, {error:.1f}% error).")
    else:
        lines.append("- Best meta-learner ≤ 20% error on 20-way 1-shot within one alphabet: not evaluated "
                     "(no 20-way training in this run).")
    failures, settings = [], 0
    for test in TEST_SETTINGS:
        methods = entry["cells"].get(test.key)
        if not methods or not _learner_methods(methods):
            continue
        settings += 1
        worst = min(_learner_methods(methods), key=lambda m: methods[m]["accuracy"])
        baselines = [m for m in methods if m not in _learner_methods(methods)]
        top = max(baselines, key=lambda m: methods[m]["accuracy"])
        if methods[worst]["accuracy"] <= methods[top]["accuracy"]:
            failures.append(f"{test.label}: {method_label(worst).strip('*')} {_percent(methods[worst]['accuracy'])} "
                            f"≤ {method_label(top).removeprefix('baseline: ')} {_percent(methods[top]['accuracy'])}")
    status = "reached" if not failures else "**not reached**"
    detail = f"in all {settings} test settings" if not failures else "; ".join(failures)
    lines.append(f"- Every meta-learner above every baseline (mean accuracies): {status} ({detail}).")
    return lines


def _learner_methods(methods: dict[str, Any]) -> list[str]:
    return [m for m in methods if not m.endswith("-features") and m.split("-")[0] in LEARNERS]


def markdown(results: dict[str, Any]) -> str:
    """The section, between its markers."""
    config, machine = results["config"], results["machine"]
    budget = (f"{config['iterations']:,} meta-iterations" if config["minutes"] is None else
              f"{config['minutes']:g} minutes" + (f" or {config['iterations']:,} meta-iterations, whichever came first"
                                                  if config["iterations"] is not None else ""))
    if config.get("target_minutes") is not None:
        budget += f" ({config['target_minutes']:g} minutes for the target's training, 20-way Meta-SGD with Conv-4)"
    threads = max([t["threads"] for d in results["directions"].values() for t in d["trainings"].values()] or [0])
    lines = [MARK_START, "", "## Omniglot: few-shot classification of new alphabets", "",
             "Written by `python benchmarks/reproduce.py --sections omniglot` (do not edit by hand) on "
             f"{machine['cpu']} ({machine['level']} level, metafast {machine['version']}), each training with "
             f"{threads} thread{'s' * (threads != 1)}, {config['jobs']} at a time on {machine['cores']} cores; "
             f"each training ran for {budget}; {config['episodes']:,} test episodes per test setting "
             f"(seed {results['eval_seed']}), the same for every method; section total "
             f"{results['seconds'] / 60:.0f} min.", ""]
    scratch = results["scratch"]
    for key, entry in results["directions"].items():
        lines += [f"### {entry['name']}", "",
                  f"Meta-trained on {', '.join(entry['train_alphabets'])} (4 rotations); tested on "
                  f"{', '.join(entry['test_alphabets'])}.", "",
                  "| test setting | method | accuracy (mean ± 95% CI) | error | meta-iterations | meta-training |",
                  "|---|---|---|---|---|---|"]
        for test in TEST_SETTINGS:
            methods = entry["cells"].get(test.key)
            if not methods:
                continue
            for method in _order(methods):
                result = methods[method]
                accuracy = f"{100 * result['accuracy']:.1f} ± {100 * result['ci95']:.1f}%"
                if result.get("diverged"):
                    accuracy += f" ({result['diverged']} diverged, scored 0)"
                iterations = training = "—"
                if method == "scratch-conv":
                    accuracy += f" (first {result['episodes']} episodes)"
                    training = f"none; {result['steps']} Adam steps per episode"
                elif method not in ("pixel-nn", "pixel-ncm"):
                    learner, model = method.split("-")[:2]
                    record = entry["trainings"][training_name(key, test.ways, learner, model)]
                    iterations = f"{record['iterations']:,}"
                    training = _duration(record["seconds"])
                lines.append(f"| {test.label} | {method_label(method)} | {accuracy} | "
                             f"{_percent(1 - result['accuracy'])} | {iterations} | {training} |")
            if test.within:
                for name, error in PUBLISHED_WITHIN[key]:
                    lines.append(f"| {test.label} | published: {name} | — | {error:.1f}% | — | — |")
        lines += ["", *verdicts(entry), ""]
    short = sorted({a for entry in results["directions"].values() for a in entry["short_for_within"]})
    lines += [
        "Notes:", "",
        "- One training per (direction, ways, learner, network), on 1-shot episodes with 1 query image per class "
        "(Reptile: its paper's 10-shot training sets), evaluated at 1 and 5 shots; the 20-way trainings also on "
        "20-way 1-shot within one alphabet. Test episodes have "
        f"{results['test_query']} query images per class.",
        "- Within one alphabet, only alphabets with at least 20 characters are drawn (the task family does this)"
        + (f": {', '.join(short)} {'has fewer and never appears' if len(short) == 1 else 'have fewer and never appear'}"
           " there." if short
           else "."),
        "- Meta-learners adapt with their training inner-step count (Reptile: 50 steps, its paper's evaluation); "
        "batch normalisation takes the support set's statistics while adapting and the query set's when scoring "
        "(transductive, as MAML and Reptile's code evaluate).",
        "- Nearest class mean in the features: the meta-trained theta, unadapted; the features are what the network "
        "feeds its output layer (Conv-4: the blocks and the average over positions, computed by a ConvNet with an "
        "identity output layer; MLP: its last hidden layer after ReLU), computed on the support and query images "
        "of the episode together (batch normalisation over both: transductive as the meta-learners' scores); "
        "Euclidean distance to the class means of the support features.",
        f"- Conv-4 from scratch: a fixed random initialisation (seed 0), {scratch['steps']} full-batch "
        f"{scratch['optimizer'].capitalize()} steps of {scratch['lr']:g} on the support set, scored on the query "
        f"set; on the first {min(scratch['episodes'], config['episodes'])} episodes of each setting (slow).",
        "- The MLP is MAML's 784-256-128-64-64 with ReLU but without MAML's batch normalisation.",
        "- \"every meta-learner above every baseline\" compares means; the feature readouts count as baselines.",
        "- The published rows are reference points, not the same test: Lake et al. scored their own 20-way "
        "episodes, drawn within Omniglot's evaluation alphabets, not within these.",
        "- The literature's 5- and 20-way numbers (MAML 98.7% 5-way 1-shot, ...) meta-train on Omniglot's 30 "
        "background alphabets (1,200 characters); these trainings see 5 alphabets (136 or 156 characters) and "
        "far fewer meta-iterations, so they are not comparable and are not quoted.",
        "", "Settings (`SETTINGS` in `benchmarks/omniglot.py`):", "",
        "| learner | ways | meta-batch | inner lr | inner steps | test steps | training shots + query | other | source |",
        "|---|---|---|---|---|---|---|---|---|"]
    for learner, table in results["settings"].items():
        for ways, s in table.items():
            other = (f"meta Adam {s['meta_lr']:g}" if s["meta_lr"] is not None else
                     f"inner batch {s['inner_batch']} (test {s['test_batch']}), outer step {s['epsilon'][0]:g} → "
                     f"{s['epsilon'][1]:g}, inner Adam betas {tuple(s['adam_betas'])}")
            lines.append(f"| {LEARNERS[learner]} | {ways} | {s['meta_batch']} | {s['inner_lr']:g} | {s['inner_steps']} "
                         f"| {s['test_steps']} | {s['train_shots']} + {s['train_query']} | {other} | {s['source']} |")
    if results.get("figure"):
        lines += ["", f"![Held-out 5-way 1-shot episodes]({results['figure']})", "",
                  "Three 5-way 1-shot episodes of the new alphabets (small1's model): per class its support "
                  "image, then five of its queries, framed green where Meta-SGD (Conv-4) after its adaptation "
                  "step predicts the class and red where it does not."]
    lines += ["", MARK_END]
    return "\n".join(lines)


def replace_block(document: str, block: str) -> str:
    """``document`` with its omniglot block replaced by ``block`` (appended if it has none)."""
    start, end = document.find(MARK_START), document.find(MARK_END)
    if start >= 0 and end > start:
        return document[:start] + block + document[end + len(MARK_END):]
    if not document.strip():
        return block + "\n"
    return document.rstrip("\n") + "\n\n" + block + "\n"


def existing_block(document: str) -> Optional[str]:
    start, end = document.find(MARK_START), document.find(MARK_END)
    return document[start:end + len(MARK_END)] if start >= 0 and end > start else None


def write_text_atomically(path: Any, text: str) -> None:
    """Writes under a temporary name in the same folder, syncs and renames over ``path``:
    readers see the old file or the new one, never a part."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# ---------------------------------------------------------------------------------------------
# Command line (reproduce.py's options for this section)
# ---------------------------------------------------------------------------------------------
def _names(known: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        unknown = [v for v in values if v not in known]
        if unknown or not values:
            raise argparse.ArgumentTypeError(f"choose among {', '.join(known)} (comma-separated), got {text!r}")
        return values
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("omniglot section")
    group.add_argument("--minutes", type=float, help="time budget of each training (default 30; with --iterations: "
                       "none unless given)")
    group.add_argument("--target-minutes", type=float, help="time budget of the target's training, 20-way Meta-SGD "
                       "with Conv-4, on each direction (default: --minutes)")
    group.add_argument("--iterations", type=int, help="meta-iterations of each training")
    group.add_argument("--episodes", type=int, help="test episodes per test setting (default 1000)")
    group.add_argument("--scratch-episodes", type=int, help=f"of those, for Conv-4 from scratch (default "
                       f"{SCRATCH['episodes']})")
    group.add_argument("--jobs", type=int, default=1, help="trainings at a time, each in its own process")
    group.add_argument("--threads", type=int, help="threads per learner (default: the cores over --jobs)")
    group.add_argument("--directions", type=_names(("small1", "small2")), default=("small1", "small2"),
                       help="meta-training subsets: small1 (→ small2's new alphabets), small2 (→ small1's)")
    group.add_argument("--learners", type=_names(tuple(LEARNERS)), default=tuple(LEARNERS),
                       help=f"some of {','.join(LEARNERS)}")
    group.add_argument("--models", type=_names(tuple(MODELS)), default=tuple(MODELS), help="some of conv,mlp")
    group.add_argument("--save-dir", help="save each trained learner (.npz, and its training record .json) here")
    group.add_argument("--reuse", action="store_true", help="load the learners saved in --save-dir instead of "
                       "training them again")
    group.add_argument("--json", help="write the raw numbers (per-episode counts included) to this JSON file")


def config_from(args: argparse.Namespace) -> Config:
    """The run the options ask for; --quick: ``QUICK`` and small networks, unless the options
    say otherwise."""
    quick = bool(getattr(args, "quick", False))
    iterations = args.iterations if args.iterations is not None else (QUICK["iterations"] if quick else None)
    minutes = args.minutes if args.minutes is not None else (None if iterations is not None else 30.0)
    return Config(minutes=minutes, iterations=iterations, target_minutes=args.target_minutes,
                  episodes=args.episodes or (QUICK["episodes"] if quick else 1000),
                  scratch_episodes=args.scratch_episodes or (QUICK["scratch_episodes"] if quick else SCRATCH["episodes"]),
                  scratch_steps=QUICK["scratch_steps"] if quick else SCRATCH["steps"], jobs=args.jobs,
                  threads=args.threads,
                  directions=tuple(args.directions), learners=tuple(args.learners), models=tuple(args.models),
                  save_dir=args.save_dir, reuse=args.reuse, quick=quick)
