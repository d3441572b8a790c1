"""The ``metafast`` command line: ``demo``, ``train`` and ``evaluate``."""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from typing import Any, Sequence

import numpy as np

from . import __version__, build_info, distributed
from ._atomic_file import check_destination
from .convnet import ConvNet
from .datasets import omniglot_subsets
from .datasets.omniglot import SUBSETS
from .io import load
from .maml import MAML
from .meta_sgd import MetaSGD
from .mlp import INIT_SCHEMES, MLP
from .plot import PlottingUnavailable, adaptation_figure, history_figure, image_episodes, navigation_figure
from .reptile import Reptile
from .rl import MetaSGDRL, Navigation2D
from .tasks import GaussianNWay, LinearBinary, Omniglot, SeedBinary, Sinusoid, TaskFamily

TASKS = ("sine", "linear-binary", "seed-binary", "nway", "omniglot", "nav2d")


class UserError(Exception):
    """A mistake of the user's, reported as one line without a traceback."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument gives one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def init_scheme(text: str) -> Any:
    """--init: a scheme of MLP.init, or normal:STD."""
    if text in INIT_SCHEMES:
        return text
    if text.startswith("normal:"):
        return "normal", positive_float(text.split(":", 1)[1])
    raise argparse.ArgumentTypeError(f"must be {', '.join(INIT_SCHEMES)} or normal:STD, got {text}")


positive_int.__name__ = "positive integer"
non_negative_int.__name__ = "non-negative integer"
positive_float.__name__ = "positive number"

ALGORITHMS = ("metasgd", "maml", "reptile", "metasgd-rl")
ALGORITHM_NAMES = {"metasgd": "Meta-SGD", "maml": "MAML", "reptile": "Reptile",
                   "metasgd-rl": "Meta-SGD RL"}  # as the docs spell them
LEARNERS = {"metasgd": MetaSGD, "maml": MAML, "reptile": Reptile, "metasgd-rl": MetaSGDRL}
# The train options that depend on the algorithm, per algorithm. argparse leaves these options
# None, so a value the user asks for is always honoured, whatever it is; one an algorithm does
# not use is an error rather than silently ignored.
ALGORITHM_OPTIONS: dict[str, tuple[str, ...]] = {
    "metasgd": ("meta_batch", "inner_steps", "alpha_init", "meta_lr", "meta_optimizer", "first_order",
                "alpha_per_step", "clip_grad_norm", "init", "alpha_lr"),
    "maml": ("meta_batch", "inner_steps", "inner_lr", "meta_lr", "meta_optimizer", "first_order", "clip_grad_norm",
             "init"),
    "reptile": ("meta_batch", "inner_optimizer", "inner_lr", "inner_epochs", "inner_batch", "epsilon",
                "epsilon_final", "shuffle"),
    "metasgd-rl": ("meta_batch", "alpha_init", "meta_lr", "meta_optimizer", "first_order", "trajectories", "gamma",
                   "alpha_lr", "inner_steps"),
}
# Options named otherwise than the learner's parameter they set.
PARAMETER_NAMES = {"trajectories": "inner_trajectories"}


def signature_default(learner: type, option: str) -> Any:
    """The default of the parameter an option sets: the learner's constructor's, or, for an
    option of training such as meta_batch, its fit's. The learners' signatures are the one
    source of truth; the command line copies none of them."""
    name = PARAMETER_NAMES.get(option, option)
    for method in (learner.__init__, learner.fit):  # type: ignore[misc]
        parameter = inspect.signature(method).parameters.get(name)
        if parameter is not None:
            if parameter.default is inspect.Parameter.empty:
                raise TypeError(f"{learner.__name__}.{method.__name__} has no default for {name}")
            return parameter.default
    raise TypeError(f"neither {learner.__name__}() nor its fit takes {name}")


# None: the learner's default, which depends on other settings (the learners' docstrings).
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    algorithm: {option: signature_default(LEARNERS[algorithm], option) for option in options}
    for algorithm, options in ALGORITHM_OPTIONS.items()
}
TRAIN_OPTIONS = sorted({name for defaults in TRAIN_DEFAULTS.values() for name in defaults})


def convnet_default(option: str) -> Any:
    """The default of a ConvNet option: mf.ConvNet's signature's (the one source of truth)."""
    return inspect.signature(ConvNet).parameters[option].default


def family_default(family: type, option: str) -> Any:
    """The default of a task family's parameter: its signature's (the one source of truth)."""
    return inspect.signature(family).parameters[option].default


def tasks_defaults_help(defaults: dict[str, Any]) -> str:
    """Task families' defaults of an option, each value once: "5 for nway and omniglot",
    "1 for nway; 5 for omniglot"."""
    users: dict[Any, list[str]] = {}  # each value and the tasks it is the default of
    for task, value in defaults.items():
        users.setdefault(value, []).append(task)
    return "; ".join(f"{value} for {listed(tasks)}" for value, tasks in users.items())


# The train options of some task families only, and those families (--task). argparse leaves
# them None, so that one given for another task is an error rather than silently ignored.
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "ways": ("nway", "omniglot"), "alphabets": ("omniglot",), "subset": ("omniglot",), "rotations": ("omniglot",),
    "shift": ("omniglot",), "within_alphabet": ("omniglot",),
}
# Omniglot's defaults for meta-training where they differ from mf.tasks.Omniglot's (which are
# those of testing): the minimal-set protocol meta-trains on small1, each character in 4
# rotations (MAML's, Meta-SGD's and Reptile's augmentation).
OMNIGLOT_TRAIN_DEFAULTS = {"subset": "small1", "rotations": 4}
# evaluate's defaults for an Omniglot model's held-out tasks: no augmentation at test.
OMNIGLOT_EVALUATE_DEFAULTS = {"rotations": 1, "shift": 0}
# evaluate's options that change an Omniglot model's family (--shots: the support option).
OMNIGLOT_EVALUATE_OPTIONS = ("alphabets", "subset", "rotations", "shift", "shots", "within_alphabet", "ways")
# The hidden layers of an MLP on Omniglot: MAML's (Finn et al. 2017, its non-convolutional network).
OMNIGLOT_MLP_HIDDEN = [256, 128, 64, 64]


def subset_alphabets(subset: str) -> tuple[str, ...]:
    """The alphabets of a shipped Omniglot subset (both: all of them), sorted."""
    subsets = omniglot_subsets()
    return tuple(sorted({name for names in subsets.values() for name in names})) if subset == "both" \
        else tuple(sorted(subsets[subset]))


def check_alphabets(alphabets: list[str] | None, subset: str) -> None:
    """--alphabets must name alphabets of --subset: a one-line error naming them otherwise."""
    valid = subset_alphabets(subset)
    unknown = [name for name in alphabets or () if name not in valid]
    if unknown:
        holding = next((other for other in SUBSETS if set(alphabets or ()) <= set(subset_alphabets(other))), None)
        raise UserError(f"--alphabets: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the "
                        f"alphabets of --subset {subset}: {', '.join(valid)}"
                        + (f" (--subset {holding} holds them all)" if holding is not None else ""))


def option_names(names: Sequence[str]) -> str:
    return ", ".join(f"--{name.replace('_', '-')}" for name in names)


# The train options that shape a ConvNet (--model conv), as ConvNet's parameters name them.
CONVNET_OPTIONS = ("input_shape", "channels", "kernel_size", "stride", "padding", "pool", "batch_norm",
                   "batch_norm_scale", "head")


def defaults_help(name: str, flag: bool = False, none: str | None = None) -> str:
    """The algorithms an option applies to and its defaults, from TRAIN_DEFAULTS: "A, B;
    default X", "default X for A and B; Y for C", or, for a flag, "A, B". `none` says what a
    default of None means to the learners ("no clipping"), shown in its place."""
    values = {algorithm: none if defaults[name] is None and none is not None else defaults[name]
              for algorithm, defaults in TRAIN_DEFAULTS.items() if name in defaults}
    if flag:
        return ", ".join(values)
    if len(set(values.values())) == 1:
        return f"{', '.join(values)}; default {next(iter(values.values()))}"
    users: dict[Any, list[str]] = {}  # each value and the algorithms it is the default of
    for algorithm, value in values.items():
        users.setdefault(value, []).append(algorithm)
    return "default " + "; ".join(f"{value} for {listed(algorithms)}" for value, algorithms in users.items())


def listed(names: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def resolve_train_defaults(args: argparse.Namespace) -> None:
    """Fills the algorithm-dependent train options left unset with the algorithm's defaults."""
    defaults = TRAIN_DEFAULTS[args.algorithm]
    for name in TRAIN_OPTIONS:
        value = getattr(args, name)
        if name in defaults:
            setattr(args, name, defaults[name] if value is None else value)
        elif value is not None:
            raise UserError(f"--{name.replace('_', '-')} does not apply to {args.algorithm}")


def build_parser() -> Parser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=non_negative_int, default=0, help="threads, 0 = all cores (default 0)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    seeded = argparse.ArgumentParser(add_help=False, parents=[common])
    seeded.add_argument("--seed", type=non_negative_int, help="seed of the initial parameters and of every random "
                        "stream of training (default 0)")

    parser = Parser(prog="metafast", description="Fast meta-learning (Meta-SGD, Reptile) for small networks on CPUs.")
    parser.add_argument("--version", action="version", version=f"metafast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    demo = commands.add_parser("demo", parents=[seeded],
                               help="meta-train Meta-SGD, MAML and Reptile on sine waves and plot them (--rl: 2D "
                                    "navigation; --omniglot: MAML on Omniglot's characters)")
    demo.add_argument("--out", help="PNG to write (default metafast-demo.png; metafast-demo-rl.png with --rl, "
                      "metafast-demo-omniglot.png with --omniglot)")
    demo.add_argument("--scale", type=positive_float, default=1.0,
                      help="multiply the meta-training iterations (default 1; 0.05 for a quick look)")
    demo.add_argument("--tasks", type=positive_int, help="held-out tasks to evaluate (default 600; 40 with --rl)")
    other_demos = demo.add_mutually_exclusive_group()
    other_demos.add_argument("--rl", action="store_true",
                             help="the reinforcement-learning demo instead: Meta-SGD on 2D navigation")
    other_demos.add_argument("--omniglot", action="store_true",
                             help="the image demo instead: MAML with a small ConvNet on 5-way 1-shot Omniglot, "
                                  "tested on held-out alphabets, picturing episodes and their predictions")

    train = commands.add_parser("train", parents=[seeded], help="meta-train a model and save it",
                                description="Meta-trains a model and saves it. Options left out take the "
                                "algorithm's defaults; an option the algorithm does not use is an error.")
    train.add_argument("algorithm", choices=ALGORITHMS, help="the meta-learner")
    train.add_argument("--task", choices=TASKS,
                       help="task family (default sine; nav2d, the only one, for metasgd-rl; omniglot: the Omniglot "
                            "characters shipped with metafast, images 1x28x28)")
    train.add_argument("--iterations", type=positive_int, default=5000,
                       help="meta-iterations of the whole run, a resumed one included (default 5000)")
    train.add_argument("--meta-batch", type=positive_int, help=f"tasks per meta-iteration ({defaults_help('meta_batch')})")
    train.add_argument("--hidden", nargs="+", metavar="WIDTH",
                       help="hidden layer widths, or 'none' for no hidden layer (default 40 40 for metasgd and maml "
                            "on sine, 64 64 for reptile on sine, 32 for nway, "
                            f"{' '.join(map(str, OMNIGLOT_MLP_HIDDEN))} for omniglot (MAML's), none for the binary "
                            "tasks, 100 100 for nav2d)")
    train.add_argument("--activation", choices=("relu", "tanh", "sigmoid", "identity"),
                       help="hidden activation, or a ConvNet's blocks' (default relu; tanh for reptile on sine "
                            "with an MLP)")
    train.add_argument("--model", choices=("mlp", "conv"),
                       help="the network: an MLP (--hidden) or a ConvNet (the options below; metasgd, maml and "
                            "reptile) (default mlp)")
    train.add_argument("--support", "--shots", dest="support", type=positive_int,
                       help="support points per task, per class (shots) for nway and omniglot (default "
                            f"{family_default(Sinusoid, 'support')}; " + tasks_defaults_help(
                                {"nway": family_default(GaussianNWay, "support"),
                                 "omniglot": family_default(Omniglot, "shots")}) + ")")
    train.add_argument("--query", type=positive_int,
                       help="query points per task, per class for nway and omniglot (default "
                            f"{family_default(Sinusoid, 'query')}; " + tasks_defaults_help(
                                {task: family_default(family, "query")
                                 for task, family in (("nway", GaussianNWay), ("omniglot", Omniglot))}) + ")")
    train.add_argument("--ways", type=int, help="classes per task, the model's outputs (default " + tasks_defaults_help(
        {task: family_default(family, "ways") for task, family in (("nway", GaussianNWay), ("omniglot", Omniglot))})
                       + ")")
    train.add_argument("--dtype", choices=("float32", "float64"), help="precision of all computations (default float32)")
    train.add_argument("--save", required=True, help="model file to write (.npz), atomically; Ctrl-C saves the "
                       "model reached to it")
    train.add_argument("--plot", help="PNG of the meta-training curve (and, for sine, of adaptation)")
    train.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                       help="also save the model to --save every N meta-iterations (default: at the end only)")
    train.add_argument("--resume", metavar="FILE",
                       help="continue the run saved in FILE (a --save file) up to --iterations meta-iterations; the "
                            "learner, its hyperparameters, seed, task family and meta-batch come from FILE (another "
                            "--meta-batch is refused: only the same continues bit for bit)")
    # Options whose default depends on the algorithm: default=None, resolved by resolve_train_defaults.
    # The learners' settings are parsed as numbers only: their ranges are the learners' to check
    # (the message, naming the setting, is the command's error), one check for each.
    sgd = train.add_argument_group("Meta-SGD and MAML")
    sgd.add_argument("--inner-steps", type=int, help=f"inner steps ({defaults_help('inner_steps')})")
    sgd.add_argument("--alpha-init", type=float,
                     help=f"initial inner learning rates ({defaults_help('alpha_init')})")
    sgd.add_argument("--meta-lr", type=float, help=f"meta learning rate ({defaults_help('meta_lr')})")
    sgd.add_argument("--alpha-lr", type=float,
                     help="alpha's meta learning rate (metasgd, metasgd-rl; default: --meta-lr, times "
                          "--alpha-init with several --inner-steps or for metasgd-rl)")
    sgd.add_argument("--meta-optimizer", choices=("adam", "sgd", "trpo"),
                     help=f"update of [theta, alpha]; trpo (MAML's TRPO meta-update) for metasgd-rl only "
                          f"({defaults_help('meta_optimizer')})")
    sgd.add_argument("--first-order", action="store_true", default=None,
                     help=f"drop the Hessian terms of the meta-gradient ({defaults_help('first_order', flag=True)})")
    sgd.add_argument("--alpha-per-step", action="store_true", default=None,
                     help=f"one alpha vector per inner step ({defaults_help('alpha_per_step', flag=True)})")
    sgd.add_argument("--clip-grad-norm", type=float, metavar="NORM",
                     help="clip the mean meta-gradient to this norm "
                          f"({defaults_help('clip_grad_norm', none='no clipping')})")
    sgd.add_argument("--init", type=init_scheme, metavar="SCHEME",
                     help=f"initial theta: {', '.join(INIT_SCHEMES)} or normal:STD, e.g. normal:0.01 "
                          f"({defaults_help('init', none='auto (He before ReLU, Glorot otherwise) with one inner step, glorot with more')})")
    rep = train.add_argument_group("Reptile")
    rep.add_argument("--inner-optimizer", choices=("adam", "sgd"),
                     help="inner optimizer (reptile; default adam for sine, sgd for the classification tasks)")
    rep.add_argument("--inner-lr", type=float,
                     help="inner learning rate (default 0.01 for maml; for reptile 0.01 with adam, 0.1 with sgd)")
    rep.add_argument("--inner-epochs", type=int,
                     help=f"passes over the support set ({defaults_help('inner_epochs')})")
    rep.add_argument("--inner-batch", type=int, help=f"rows per minibatch ({defaults_help('inner_batch')})")
    rep.add_argument("--epsilon", type=float, help=f"outer step size ({defaults_help('epsilon')})")
    rep.add_argument("--epsilon-final", type=float,
                     help="anneal epsilon linearly to this value over the run (reptile; default: no annealing)")
    rep.add_argument("--shuffle", action="store_true", default=None,
                     help=f"reshuffle the support rows every pass ({defaults_help('shuffle', flag=True)})")
    conv = train.add_argument_group("ConvNet (--model conv)")
    conv.add_argument("--input-shape", nargs=3, type=positive_int, metavar=("C", "H", "W"),
                      help="the images' shape: the task's input rows read as C x H x W images (default: the "
                           "task's images' shape, 1 28 28 for omniglot; 1 1 WIDTH for the others)")
    conv.add_argument("--channels", nargs="+", type=positive_int, metavar="C",
                      help=f"each block's output channels (default {' '.join(map(str, convnet_default('channels')))})")
    conv.add_argument("--kernel-size", type=positive_int, help=f"kernel side (default {convnet_default('kernel_size')})")
    conv.add_argument("--stride", type=positive_int, help=f"convolution stride (default {convnet_default('stride')})")
    conv.add_argument("--padding", choices=("same", "valid"), help=f"default {convnet_default('padding')}")
    conv.add_argument("--pool", choices=("max",), help="a 2x2 max-pool after each block (default none)")
    conv.add_argument("--batch-norm", action=argparse.BooleanOptionalAction,
                      help=f"batch normalisation with the batch's statistics (default {convnet_default('batch_norm')})")
    conv.add_argument("--batch-norm-scale", action=argparse.BooleanOptionalAction,
                      help=f"a learned batch-norm scale (default {convnet_default('batch_norm_scale')})")
    conv.add_argument("--head", choices=("average", "flatten"), help=f"default {convnet_default('head')}")
    omniglot = train.add_argument_group("Omniglot (--task omniglot)")
    omniglot.add_argument("--alphabets", nargs="+", metavar="NAME",
                          help="the alphabets whose characters are drawn (default: every alphabet of --subset)")
    omniglot.add_argument("--subset", choices=SUBSETS,
                          help="the shipped set the alphabets come from, as metafast.datasets.load_omniglot "
                               f"names them (default {OMNIGLOT_TRAIN_DEFAULTS['subset']}, the meta-training set of "
                               "the minimal-set protocol)")
    omniglot.add_argument("--rotations", type=int, metavar="N",
                          help="quarter turns per character, 1 to 4, each a class of its own (default "
                               f"{OMNIGLOT_TRAIN_DEFAULTS['rotations']}: the literature's augmentation)")
    omniglot.add_argument("--shift", type=int, metavar="N",
                          help=f"random shifts of up to N pixels (default {family_default(Omniglot, 'shift')})")
    omniglot.add_argument("--within-alphabet", action="store_true", default=None,
                          help="draw every class of a task from one alphabet")
    rl = train.add_argument_group("Meta-SGD RL")
    rl.add_argument("--trajectories", type=int, help=f"trajectories per rollout ({defaults_help('trajectories')})")
    rl.add_argument("--gamma", type=float, help=f"discount of the returns ({defaults_help('gamma')})")

    evaluate = commands.add_parser("evaluate", parents=[common], help="evaluate a saved model on held-out tasks")
    evaluate.add_argument("model", help="model file written by metafast train (or learner.save)")
    evaluate.add_argument("--tasks", type=positive_int, default=600, help="held-out tasks (default 600)")
    evaluate.add_argument("--steps", type=non_negative_int, nargs="+",
                          help="adaptation steps (default 0 1 10; for Meta-SGD 0 1 and its inner steps; 0 1 2 3 "
                               "for reinforcement learning)")
    evaluate.add_argument("--eval-seed", "--seed", dest="eval_seed", type=non_negative_int, default=123,
                          help="seed of the held-out tasks; use one training did not use (default 123)")
    held_out = evaluate.add_argument_group(
        "Omniglot models (--task omniglot)", "The held-out tasks: the model's family with these changes.")
    held_out.add_argument("--alphabets", nargs="+", metavar="NAME",
                          help="the alphabets whose characters are drawn (default: the model's; every alphabet of "
                               "--subset with --subset)")
    held_out.add_argument("--subset", choices=SUBSETS, help="the shipped set the alphabets come from (default: the "
                          "model's)")
    held_out.add_argument("--rotations", type=int, metavar="N",
                          help=f"quarter turns per character (default {OMNIGLOT_EVALUATE_DEFAULTS['rotations']}: "
                               "none at test)")
    held_out.add_argument("--shift", type=int, metavar="N",
                          help=f"random shifts of up to N pixels (default {OMNIGLOT_EVALUATE_DEFAULTS['shift']}: "
                               "none at test)")
    held_out.add_argument("--shots", "--support", dest="shots", type=positive_int,
                          help="support images per class (default: the model's)")
    held_out.add_argument("--within-alphabet", action=argparse.BooleanOptionalAction,
                          help="draw every class of a task from one alphabet (default: as the model was trained)")
    held_out.add_argument("--ways", type=int, help="the model's ways only (its outputs): another is refused")

    commands.add_parser("info", help="show the build and the CPU level in use (METAFAST_CPU forces one)")
    return parser


def check_task_options(args: argparse.Namespace) -> None:
    """The options of some task families only must suit --task."""
    for tasks in dict.fromkeys(TASK_OPTIONS.values()):
        given = [name for name, allowed in TASK_OPTIONS.items() if allowed == tasks and getattr(args, name) is not None]
        if given and args.task not in tasks:
            raise UserError(f"{option_names(given)} appl{'ies' if len(given) == 1 else 'y'} only to "
                            f"{listed([f'--task {task}' for task in tasks])}, not --task {args.task}")


def make_family(args: argparse.Namespace) -> TaskFamily:
    check_task_options(args)
    if args.task == "omniglot":
        return omniglot_family(args)
    sizes = {k: v for k, v in (("support", args.support), ("query", args.query), ("ways", args.ways)) if v is not None}
    families = {"sine": Sinusoid, "linear-binary": LinearBinary, "seed-binary": SeedBinary, "nway": GaussianNWay}
    return families[args.task](**sizes)


def omniglot_family(args: argparse.Namespace) -> Omniglot:
    """--task omniglot's family: Omniglot's defaults for those left out, but meta-training's
    subset and rotations (OMNIGLOT_TRAIN_DEFAULTS)."""
    subset = args.subset or OMNIGLOT_TRAIN_DEFAULTS["subset"]
    check_alphabets(args.alphabets, subset)
    given = {name: value for name, value in (("ways", args.ways), ("shots", args.support), ("query", args.query),
                                             ("shift", args.shift), ("within_alphabet", args.within_alphabet))
             if value is not None}
    rotations = OMNIGLOT_TRAIN_DEFAULTS["rotations"] if args.rotations is None else args.rotations
    return Omniglot(args.alphabets, subset=subset, rotations=rotations, **given)


def hidden_widths(args: argparse.Namespace, default: list[int]) -> list[int]:
    """--hidden: widths, or 'none' for no hidden layer; the task's default when left out."""
    if args.hidden is None:
        return default
    if args.hidden == ["none"]:
        return []
    try:
        return [positive_int(width) for width in args.hidden]
    except (ValueError, argparse.ArgumentTypeError):
        raise UserError(f"--hidden takes positive layer widths or 'none', got {' '.join(args.hidden)}") from None


def check_model_options(args: argparse.Namespace) -> None:
    """The network options must suit --model: ConvNet's for conv, --hidden for mlp."""
    given = [f"--{name.replace('_', '-')}" for name in CONVNET_OPTIONS if getattr(args, name) is not None]
    if args.model is None:
        args.model = "mlp"
    if args.model != "conv" and given:
        raise UserError(f"{', '.join(given)} shape a ConvNet: add --model conv")
    if args.model == "conv" and args.hidden is not None:
        raise UserError("--hidden shapes an MLP; a ConvNet takes --channels")


def make_convnet(args: argparse.Namespace, width_in: int, width_out: int, images: tuple[int, ...] | None) -> ConvNet:
    """The ConvNet of the options, ConvNet's defaults for those left out; its input shape is
    the task's images' (`images`), if they are images, or 1 x 1 x WIDTH, unless given."""
    shape = tuple(args.input_shape) if args.input_shape is not None else images or (1, 1, width_in)
    if int(np.prod(shape)) != width_in:
        raise UserError(f"--input-shape {' '.join(map(str, shape))} holds {int(np.prod(shape))} values, but the "
                        f"task's input rows have {width_in}")
    given = {name: getattr(args, name) for name in CONVNET_OPTIONS[1:] if getattr(args, name) is not None}
    return ConvNet(shape, outputs=width_out, activation=args.activation or "relu", **given)


def make_model(args: argparse.Namespace, family: TaskFamily, reptile: bool) -> MLP | ConvNet:
    batch = family.sample(1)
    width_in = batch.input_width
    width_out = family.ways if isinstance(family, (GaussianNWay, Omniglot)) else 1
    if args.model == "conv":
        images = tuple(family.input_shape) if len(getattr(family, "input_shape", ())) == 3 else None
        return make_convnet(args, width_in, width_out, images)
    default_hidden, default_activation = {
        "sine": ([64, 64], "tanh") if reptile else ([40, 40], "relu"),
        "nway": ([32], "relu"),
        "omniglot": (OMNIGLOT_MLP_HIDDEN, "relu"),
    }.get(args.task, ([], "relu"))
    hidden = hidden_widths(args, default_hidden)
    logistic = args.task in ("linear-binary", "seed-binary") and not hidden
    return MLP([width_in, *hidden, width_out], activation=args.activation or default_activation, bias=not logistic)


def make_learner(args: argparse.Namespace) -> tuple[Any, tuple[TaskFamily, ...]]:
    """The learner the options describe, and the tasks its fit takes (none for metasgd-rl)."""
    common = dict(dtype=args.dtype or "float32", seed=args.seed or 0, num_threads=args.threads)
    check_model_options(args)
    if args.algorithm == "metasgd-rl":
        if args.task not in (None, "nav2d"):
            raise UserError(f"metasgd-rl trains on --task nav2d, not {args.task}")
        for option in ("support", "query"):
            if getattr(args, option) is not None:
                raise UserError(f"--{option} does not apply to metasgd-rl (a task is a goal to reach)")
        args.task = "nav2d"
        check_task_options(args)
        if args.model == "conv":
            raise UserError("metasgd-rl's policy is an MLP: leave out --model conv")
        model = MLP([2, *hidden_widths(args, [100, 100]), 2], activation=args.activation or "relu")
        return MetaSGDRL(model, inner_trajectories=args.trajectories, gamma=args.gamma, alpha_init=args.alpha_init,
                         first_order=args.first_order, meta_optimizer=args.meta_optimizer, meta_lr=args.meta_lr,
                         alpha_lr=args.alpha_lr, inner_steps=args.inner_steps, **common), ()
    if args.task == "nav2d":
        raise UserError("--task nav2d is for metasgd-rl")
    args.task = args.task or "sine"
    family = make_family(args)
    reptile = args.algorithm == "reptile"
    model = make_model(args, family, reptile)
    if args.algorithm == "maml":
        return MAML(model, loss=family.loss, inner_lr=args.inner_lr, inner_steps=args.inner_steps,
                    first_order=args.first_order, meta_optimizer=args.meta_optimizer, meta_lr=args.meta_lr,
                    clip_grad_norm=args.clip_grad_norm, init=args.init, **common), (family,)
    if reptile:
        return Reptile(model, loss=family.loss, inner_optimizer=args.inner_optimizer, inner_lr=args.inner_lr,
                       inner_epochs=args.inner_epochs, inner_batch=args.inner_batch, epsilon=args.epsilon,
                       epsilon_final=args.epsilon_final, shuffle=args.shuffle, **common), (family,)
    return MetaSGD(model, loss=family.loss, inner_steps=args.inner_steps, alpha_init=args.alpha_init,
                   first_order=args.first_order, meta_optimizer=args.meta_optimizer, meta_lr=args.meta_lr,
                   alpha_per_step=args.alpha_per_step, clip_grad_norm=args.clip_grad_norm, init=args.init,
                   alpha_lr=args.alpha_lr, **common), (family,)


# What a resumed run takes from its file: every option that describes the learner or its tasks.
RESUMED_OPTIONS = ("task", "hidden", "activation", "model", "support", "query", "dtype", "seed", *TASK_OPTIONS,
                   *CONVNET_OPTIONS, *(name for name in TRAIN_OPTIONS if name != "meta_batch"))
TASK_NAMES = {Sinusoid: "sine", LinearBinary: "linear-binary", SeedBinary: "seed-binary", GaussianNWay: "nway",
              Omniglot: "omniglot"}


def resumed_learner(args: argparse.Namespace) -> tuple[Any, tuple[TaskFamily, ...]]:
    """The learner saved in --resume, and the tasks it was training on."""
    given = [f"--{name.replace('_', '-')}" for name in RESUMED_OPTIONS if getattr(args, name) is not None]
    if given:
        raise UserError(f"--resume takes the learner and its tasks from {args.resume}: leave out {', '.join(given)}")
    learner = load(args.resume, num_threads=args.threads)
    if type(learner) is not LEARNERS[args.algorithm]:
        raise UserError(f"{args.resume} holds a {type(learner).__name__} learner, not {args.algorithm}")
    if learner.iteration >= args.iterations:
        raise UserError(f"{args.resume} already holds {learner.iteration} meta-iterations; ask for more with "
                        f"--iterations")
    if isinstance(learner, MetaSGDRL):
        args.task = "nav2d"
        tasks: tuple[TaskFamily, ...] = ()
    elif type(learner.tasks) in TASK_NAMES:
        args.task = TASK_NAMES[type(learner.tasks)]
        tasks = (learner.tasks,)
    else:
        told = untold_tasks(learner) if learner.tasks is None else f"was trained on {learner.tasks!r}"
        raise UserError(f"{args.resume} {told}, so it records no task family the command line trains on: resume "
                        f"it from Python, with learner = metafast.load({str(args.resume)!r}) and then "
                        "learner.fit(your_tasks, ...)")
    if args.meta_batch is None:
        if learner.meta_batch is None:  # a file from before the meta-batch was recorded
            raise UserError(f"--resume needs --meta-batch, the one {args.resume} was trained with: the file does not "
                            "record it, and only the same meta-batch continues the run bit for bit")
        args.meta_batch = learner.meta_batch
    elif learner.meta_batch is not None and args.meta_batch != learner.meta_batch:
        raise UserError(f"{args.resume} was trained with --meta-batch {learner.meta_batch}; only the same continues "
                        f"the run bit for bit: leave --meta-batch out (or give {learner.meta_batch})")
    return learner, tasks


def default_steps(learner: MetaSGD | MAML | Reptile) -> int:
    """Adaptation steps a plot shows: the inner steps of meta-training (Meta-SGD, MAML), or 10."""
    return learner.inner_steps if isinstance(learner, (MetaSGD, MAML)) else 10


def processes_text(comm: Any) -> str:
    return "" if comm is None else f" on {comm.Get_size()} processes"


def fit_keeping_work(learner: Any, args: argparse.Namespace, root: bool, *tasks: Any, **settings: Any) -> None:
    """learner.fit(*tasks, **settings); on Ctrl-C the model reached is saved to --save (by the
    first process of an MPI run) before KeyboardInterrupt goes on: no work is lost."""
    try:
        learner.fit(*tasks, **settings)
    except KeyboardInterrupt:
        if root and learner.iteration > 0:
            learner.save(args.save)
            print(f"metafast train: interrupted after {learner.iteration} meta-iterations; saved the model "
                  f"reached to {args.save}", file=sys.stderr)
        raise


def check_destinations(args: argparse.Namespace, *options: str) -> None:
    """Checks, before any training, that the files the command will write can be written: a
    missing folder or a name too long is reported at once, not after the work."""
    for option in options:
        if getattr(args, option) is not None:
            check_destination(getattr(args, option), f"--{option}")


def run_train(args: argparse.Namespace) -> int:
    learner, tasks = resumed_learner(args) if args.resume is not None else (None, ())
    resolve_train_defaults(args)
    check_destinations(args, "save", "plot")
    if learner is None:
        learner, tasks = make_learner(args)
    first = learner.iteration
    started = time.perf_counter()
    comm = distributed.launched_world()
    root = comm is None or comm.Get_rank() == 0
    checkpoints = {} if args.checkpoint_every is None else dict(checkpoint=args.save,
                                                                 checkpoint_every=args.checkpoint_every)
    fit_keeping_work(learner, args, root, *tasks, iterations=args.iterations - first, meta_batch=args.meta_batch,
                     progress=root and not args.quiet, comm=comm, **checkpoints)
    if not root:  # one process of an MPI run writes the files
        return 0
    learner.save(args.save)
    span = f"meta-iterations {first} to {learner.iteration}" if first else f"{learner.iteration} meta-iterations"
    print(f"trained {args.algorithm} on {args.task} for {span} in {time.perf_counter() - started:.1f} s"
          f"{processes_text(comm)}; saved {args.save}")
    if args.plot:
        plot_training(learner, tasks, args)
        print(f"wrote {args.plot}")
    return 0


def plot_training(learner: Any, tasks: tuple[TaskFamily, ...], args: argparse.Namespace) -> None:
    if isinstance(learner, MetaSGDRL):
        navigation_figure(learner, Navigation2D().sample_goals(3, seed=10_000), 1, args.plot)
        return
    label = ALGORITHM_NAMES[args.algorithm]
    family = tasks[0]
    if args.task == "sine":
        examples = [family.sample(1, seed=10_000 + i) for i in range(3)]
        adaptation_figure(examples, {label: (learner, default_steps(learner))}, {label: learner.history}, args.plot,
                          family=family)
    else:
        history_figure({label: learner.history}, args.plot, loss=learner.loss, family=family)


def untold_tasks(learner: Any) -> str:
    """What a model file that holds no built-in task family says of the tasks it was trained on."""
    saved = learner.tasks_config
    if saved is not None:
        return f"was trained on a {saved['family']} family of the user's data, which the file does not hold"
    if learner.iteration == 0:
        return "holds an untrained model, which names no task family"
    return ("was trained on a Python sampler (or on batches given to meta_step): the file does not hold its "
            "tasks")


def held_out_family(args: argparse.Namespace, learner: Any) -> TaskFamily | None:
    """The held-out tasks evaluate draws: the model's family, an Omniglot model's with the
    options' changes (and no augmentation unless asked for); None for reinforcement learning."""
    family = None if isinstance(learner, MetaSGDRL) else learner.tasks
    given = [name for name in OMNIGLOT_EVALUATE_OPTIONS if getattr(args, name) is not None]
    if not isinstance(family, Omniglot):
        if given:
            told = ("holds a MetaSGDRL learner on 2D navigation" if isinstance(learner, MetaSGDRL)
                    else untold_tasks(learner) if family is None else f"was trained on {family!r}")
            raise UserError(f"{option_names(given)} appl{'ies' if len(given) == 1 else 'y'} only to models trained "
                            f"on --task omniglot; {args.model} {told}")
        return family
    if args.ways is not None and args.ways != family.ways:
        raise UserError(f"--ways {args.ways}: the model in {args.model} has {family.ways} outputs, one per class of "
                        f"a task, so its tasks are {family.ways}-way (leave --ways out)")
    subset = args.subset or family.subset
    alphabets = args.alphabets or (None if args.subset is not None else list(family.alphabets))
    check_alphabets(alphabets, subset)
    rotations, shift = (OMNIGLOT_EVALUATE_DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)
                        for name in ("rotations", "shift"))
    return Omniglot(alphabets, subset=subset, ways=family.ways, shots=args.shots or family.shots, query=family.query,
                    rotations=rotations, shift=shift,
                    within_alphabet=family.within_alphabet if args.within_alphabet is None else args.within_alphabet)


def run_evaluate(args: argparse.Namespace) -> int:
    learner = load(args.model, num_threads=args.threads)
    tasks = held_out_family(args, learner)
    if isinstance(learner, MetaSGDRL):
        report = learner.evaluate(num_tasks=args.tasks, steps=args.steps or (0, 1, 2, 3), seed=args.eval_seed)
        print("MetaSGDRL on 2D navigation")
        print(report)
        return 0
    # Meta-SGD's learned step sizes are for its inner steps (more would warn): those by default.
    args.steps = args.steps or ([0, 1, learner.inner_steps] if isinstance(learner, MetaSGD) else [0, 1, 10])
    if tasks is None:
        raise UserError(f"{args.model} {untold_tasks(learner)}: evaluate it from Python, with learner = "
                        f"metafast.load({str(args.model)!r}) and then learner.evaluate(your_tasks)")
    report = learner.evaluate(tasks, num_tasks=args.tasks, steps=args.steps, seed=args.eval_seed)
    print(f"{type(learner).__name__} on {tasks!r}")
    print(report)
    return 0


def run_demo_rl(args: argparse.Namespace) -> int:
    learner = MetaSGDRL(MLP([2, 64, 64, 2], activation="relu"), inner_trajectories=20, seed=args.seed or 0,
                        num_threads=args.threads)
    iterations = max(1, round(100 * args.scale))
    print("meta-training Meta-SGD on 2D navigation (goals in [-0.5, 0.5]^2, 20 trajectories per rollout)")
    started = time.perf_counter()
    learner.fit(iterations=iterations, meta_batch=20, progress=not args.quiet)
    print(f"  {iterations} meta-iterations x 20 goals in {time.perf_counter() - started:.1f} s\n")
    print(learner.evaluate(num_tasks=args.tasks, steps=(0, 1, 2, 3), trajectories=40, seed=123))
    navigation_figure(learner, Navigation2D().sample_goals(3, seed=10_000), 1, args.out)
    print(f"\nwrote {args.out}")
    return 0


# The Omniglot demo's held-out alphabets: small2's that small1, which it meta-trains on, lacks.
DEMO_HELD_OUT = ("Japanese_(katakana)", "Sanskrit", "Tagalog")


def run_demo_omniglot(args: argparse.Namespace) -> int:
    ways, shots, query, meta_batch = 5, 1, 5, 8
    train = Omniglot(subset="small1", ways=ways, shots=shots, query=query, rotations=4)
    test = Omniglot(DEMO_HELD_OUT, subset="small2", ways=ways, shots=shots, query=query)
    learner = MAML(ConvNet(test.input_shape, channels=(32, 32, 32), outputs=ways), loss="softmax_ce", inner_lr=0.4,
                   inner_steps=1, meta_lr=3e-3, seed=args.seed or 0, num_threads=args.threads)
    iterations = max(1, round(1000 * args.scale))
    print(f"meta-training MAML (a ConvNet of 3 blocks of 32 channels, one inner step) on {ways}-way {shots}-shot "
          f"Omniglot: the characters of {', '.join(train.alphabets)} (small1), each in 4 rotations")
    started = time.perf_counter()
    learner.fit(train, iterations=iterations, meta_batch=meta_batch, progress=not args.quiet)
    print(f"  {iterations} meta-iterations x {meta_batch} tasks in {time.perf_counter() - started:.1f} s\n")
    print(f"held-out alphabets (small2): {', '.join(DEMO_HELD_OUT)}, {len(test.classes)} characters never seen in "
          "meta-training")
    report = learner.evaluate(test, num_tasks=args.tasks, steps=(0, 1, 5), seed=123)
    print(report)
    assert report.accuracy is not None  # a classification task
    print(f"held-out {ways}-way {shots}-shot accuracy after 1 step: {report.accuracy[1]:.1%} "
          f"± {report.accuracy_ci95[1]:.1%} (chance {1 / ways:.0%})")
    episodes = test.sample(3, seed=10_000)
    shape = (episodes.num_tasks, -1, *test.input_shape)
    predictions = np.stack([learner.predict(episodes.x_query[i], learner.adapt(episodes.x_support[i],
                                                                               episodes.y_support[i])).argmax(axis=1)
                            for i in range(episodes.num_tasks)])
    image_episodes(episodes.x_support.reshape(shape), episodes.y_support, episodes.x_query.reshape(shape),
                   episodes.y_query, predictions, args.out)
    print(f"\nwrote {args.out}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    # The defaults that differ with --rl (None on the command line, so any value asked for is kept).
    if args.tasks is None:
        args.tasks = 40 if args.rl else 600
    if args.out is None:
        args.out = "metafast-demo-rl.png" if args.rl else "metafast-demo-omniglot.png" if args.omniglot \
            else "metafast-demo.png"
    check_destinations(args, "out")
    if args.rl:
        return run_demo_rl(args)
    if args.omniglot:
        return run_demo_omniglot(args)
    family = Sinusoid(support=10, query=10)
    progress = not args.quiet
    seed = args.seed or 0
    sine_model = MLP([1, 40, 40, 1], activation="relu")
    metasgd = MetaSGD(sine_model, loss="mse", inner_steps=1, alpha_init=0.01, meta_lr=1e-3, seed=seed,
                      num_threads=args.threads)
    maml = MAML(sine_model, loss="mse", inner_lr=0.01, inner_steps=1, meta_lr=1e-3, seed=seed, num_threads=args.threads)
    reptile = Reptile(MLP([1, 64, 64, 1], activation="tanh"), loss="mse", inner_lr=1e-2, inner_epochs=10,
                      inner_batch=10, epsilon=0.1, epsilon_final=0.0, seed=seed, num_threads=args.threads)
    # Each learner with the steps it adapts with as trained: Meta-SGD's step sizes are learned
    # for its one step (repeated, they overshoot); MAML repeats its fixed step; Reptile runs Adam.
    runs = [("Meta-SGD", metasgd, round(20_000 * args.scale), 25, (0, 1)),
            ("MAML", maml, round(20_000 * args.scale), 25, (0, 1, 10)),
            ("Reptile", reptile, round(6000 * args.scale), 5, (0, 1, 10))]
    print("meta-training on sine waves y = A sin(x - phi), 10 support and 10 query points per task")
    for name, learner, iterations, meta_batch, _ in runs:
        started = time.perf_counter()
        learner.fit(family, iterations=max(iterations, 1), meta_batch=meta_batch, progress=progress)
        print(f"  {name:8s}: {learner.iteration} meta-iterations x {meta_batch} tasks in "
              f"{time.perf_counter() - started:.1f} s")
    print(f"\nquery MSE on {args.tasks} held-out tasks after 0, 1 and 10 adaptation steps (mean ± 95% CI)")
    reports = [learner.evaluate(family, num_tasks=args.tasks, steps=steps, seed=123) for _, learner, _, _, steps in runs]
    cells = [[report.cell(row) for row in range(len(report.steps))] for report in reports]
    cells[0].append(f"{'(trained for 1 step)':>22}")
    width = max(len(cell) for column in cells for cell in column)  # room for a "(x% diverged)"
    print(f"{'steps':>5}  " + "  ".join(f"{name:>22}{'':<{width - 22}}" for name, *_ in runs).rstrip())
    for row, steps in enumerate((0, 1, 10)):
        print(f"{steps:>5}  " + "  ".join(f"{column[row]:<{width}}" for column in cells).rstrip())
    print("(Meta-SGD learns its step sizes for the one step it trains with; MAML repeats its fixed step;\n"
          " Reptile adapts with Adam.)")
    tasks = [family.sample(1, seed=10_000 + i) for i in range(3)]
    adaptation_figure(tasks, {"Meta-SGD": (metasgd, 1), "MAML": (maml, 10), "Reptile": (reptile, 10)},
                      {name: learner.history for name, learner, *_ in runs}, args.out, family=family)
    print(f"\nwrote {args.out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    for key, value in build_info().items():
        print(f"{key:17s} {', '.join(value) if isinstance(value, list) else value}")
    return 0


def one_line(error: BaseException) -> str:
    """An error's message on one line, as the command line reports every error."""
    return " ".join(str(error).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad argument (already reported)
        return int(done.code or 0)
    commands: dict[str, Any] = {"demo": run_demo, "train": run_train, "evaluate": run_evaluate, "info": run_info}
    try:
        return commands[args.command](args)
    except PlottingUnavailable as error:
        print(f"metafast: {error}", file=sys.stderr)
        return 1
    except (UserError, ValueError, TypeError, OSError, distributed.RankError, ImportError) as error:
        print(f"metafast {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except MemoryError as error:  # a request beyond what the memory checks foresee
        print(f"metafast {args.command}: error: out of memory {one_line(error)}".rstrip(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metafast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
