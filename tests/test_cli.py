"""The metafast command line, called as main(argv) and once as a real process."""

from __future__ import annotations

import inspect
import json
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import metafast as mf
from hostile_files import (deep_json, saved_entries, with_compression_method, with_config, with_first_data_byte,
                           write)
from metafast import plot
from metafast import cli
from metafast.cli import main
from metafast.mlp import INIT_SCHEMES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The base class of every learner, found from one of them: its module moves in refactorings.
(Learner,) = [cls for cls in mf.MetaSGD.__mro__ if cls.__name__ == "Learner"]


def read_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    return plot.pyplot().imread(path)


def test_demo_runs_end_to_end_and_writes_a_png(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--scale", "0.01", "--tasks", "20", "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Meta-SGD" in text and "MAML" in text and "Reptile" in text and "± " in text
    # Each learner as trained: Meta-SGD's learned one-step sizes are not repeated 10 times.
    ten = next(line for line in text.splitlines() if line.split()[:1] == ["10"])
    assert "(trained for 1 step)" in ten and ten.count("±") == 2
    image = read_png(out)
    assert image.shape[0] > 400 and image.shape[1] > 800


@pytest.mark.parametrize("algorithm,task", [("metasgd", "sine"), ("reptile", "nway"), ("metasgd", "linear-binary")])
def test_train_then_evaluate_round_trips(tmp_path, capsys, algorithm, task):
    model = tmp_path / "model.npz"
    picture = tmp_path / "train.png"
    status = main(["train", algorithm, "--task", task, "--iterations", "20", "--meta-batch", "3", "--quiet",
                   "--save", str(model), "--plot", str(picture), "--seed", "4", "--threads", "1"])
    assert status == 0
    read_png(picture)
    learner = mf.load(model)
    assert learner.iteration == 20 and learner.seed == 4
    capsys.readouterr()
    assert main(["evaluate", str(model), "--tasks", "10", "--steps", "0", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "10 held-out tasks" in text and ("accuracy" in text) == (task != "sine")


@pytest.mark.parametrize("algorithm,inner_steps,shown", [("metasgd", 3, [0, 1, 3]), ("maml", 3, [0, 1, 10])])
def test_evaluate_reports_meta_sgds_trained_steps_by_default(tmp_path, capsys, algorithm, inner_steps, shown):
    model = tmp_path / "model.npz"
    assert main(["train", algorithm, "--task", "sine", "--iterations", "5", "--meta-batch", "2", "--quiet",
                 "--inner-steps", str(inner_steps), "--save", str(model), "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), "--tasks", "10", "--quiet"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line[:5].strip().isdigit()]
    assert rows == [str(steps) for steps in shown]


BAD_COMMANDS = {
    "no-command": ([], "required: command"),
    "unknown-task": (["train", "metasgd", "--task", "mnist", "--save", "m.npz"], "invalid choice: 'mnist'"),
    "bad-iterations": (["train", "reptile", "--iterations", "-5", "--save", "m.npz"], "must be a positive integer"),
    "no-save": (["train", "reptile"], "--save"),
    "bad-steps": (["evaluate", "m.npz", "--steps", "x"], "invalid non-negative integer value: 'x'"),
    "bad-scale": (["demo", "--scale", "0"], "must be a positive number"),
    "gamma-above-1": (["train", "metasgd-rl", "--gamma", "1.5", "--save", "m.npz"],
                      "gamma must lie in [0, 1], got 1.5"),
    "option-of-another-algorithm": (["train", "metasgd", "--epsilon", "0.5", "--save", "m.npz"],
                                    "--epsilon does not apply to metasgd"),
    "negative-alpha-init": (["train", "metasgd", "--alpha-init", "-0.1", "--save", "m.npz"],
                            "alpha_init must be >= 0.0, got -0.1"),
    "zero-inner-steps": (["train", "maml", "--inner-steps", "0", "--save", "m.npz"],
                         "inner_steps must lie in [1, 100000], got 0"),
    "text-meta-lr": (["train", "metasgd", "--meta-lr", "fast", "--save", "m.npz"],
                     "argument --meta-lr: invalid float value: 'fast'"),
    "two-demos": (["demo", "--rl", "--omniglot"], "argument --omniglot: not allowed with argument --rl"),
    "unknown-subset": (["train", "maml", "--task", "omniglot", "--subset", "small3", "--save", "m.npz"],
                       "argument --subset: invalid choice: 'small3'"),
}


@pytest.mark.parametrize("argv,message", BAD_COMMANDS.values(), ids=BAD_COMMANDS.keys())
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def saved_config(path):
    with np.load(path) as archive:  # the file format: config is a JSON string
        return json.loads(str(archive["config"]))


RL_TINY = ["train", "metasgd-rl", "--iterations", "1", "--meta-batch", "1", "--hidden", "4", "--trajectories", "2",
           "--quiet", "--threads", "1"]


@pytest.mark.parametrize("options,alpha_init,gamma,alpha_lr", [
    ([], 0.0015, 0.99, 1.5e-6), (["--alpha-init", "0.01", "--gamma", "1", "--alpha-lr", "0.002"], 0.01, 1.0, 0.002)])
def test_rl_defaults_are_its_own_and_any_asked_value_is_honoured(tmp_path, options, alpha_init, gamma, alpha_lr):
    # 0.01 is Meta-SGD's default alpha_init: asking for it must not give the RL default 0.0015.
    model = tmp_path / "rl.npz"
    assert main([*RL_TINY, *options, "--save", str(model)]) == 0
    config = saved_config(model)
    assert (config["alpha_init"], config["gamma"], config["inner_trajectories"]) == (alpha_init, gamma, 2)
    assert config["alpha_lr"] == pytest.approx(alpha_lr, rel=1e-12)


SIGNATURE_NAMES = {"trajectories": "inner_trajectories"}  # the CLI's option names that differ


def learner_default(learner, option):
    """The default of the learner's parameter an option sets: its constructor's, or its fit's."""
    name = SIGNATURE_NAMES.get(option, option)
    for method in (learner.__init__, learner.fit):
        parameters = inspect.signature(method).parameters
        if name in parameters:
            return parameters[name].default
    raise AssertionError(f"{learner.__name__} takes no {name}")


TRAIN_OPTION_CASES = [(algorithm, option) for algorithm, options in cli.ALGORITHM_OPTIONS.items() for option in options]


@pytest.mark.parametrize("algorithm,option", TRAIN_OPTION_CASES, ids=[f"{a}-{o}" for a, o in TRAIN_OPTION_CASES])
def test_train_defaults_are_the_learners_own(algorithm, option):
    args = cli.build_parser().parse_args(["train", algorithm, "--save", "m.npz"])
    cli.resolve_train_defaults(args)
    expected = learner_default(cli.LEARNERS[algorithm], option)
    assert getattr(args, option) == expected and type(getattr(args, option)) is type(expected)


def test_train_help_shows_the_learners_defaults(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    meta_batch = {algorithm: learner_default(cli.LEARNERS[algorithm], "meta_batch") for algorithm in cli.ALGORITHMS}
    assert f"(default {meta_batch['metasgd']} for metasgd, maml and reptile; {meta_batch['metasgd-rl']} for " \
           "metasgd-rl)" in text
    assert f"initial inner learning rates (default {learner_default(mf.MetaSGD, 'alpha_init')} for metasgd; " \
           f"{learner_default(mf.rl.MetaSGDRL, 'alpha_init')} for metasgd-rl)" in text
    assert f"initial theta: {', '.join(INIT_SCHEMES)} or normal:STD" in text


def train_help(option):
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    (action,) = [action for action in train._actions if option in action.option_strings]
    return action.help


def test_init_and_clip_help_name_their_algorithms_from_the_shared_table(monkeypatch):
    """--init and --clip-grad-norm name the algorithms and defaults through defaults_help, as
    every other option does: an algorithm that takes them appears in their help."""
    assert train_help("--init").endswith("(metasgd, maml; default auto (He before ReLU, Glorot otherwise) with one inner step, glorot with more)")
    assert train_help("--clip-grad-norm").endswith("(metasgd, maml; default no clipping)")
    widened = {algorithm: dict(defaults) for algorithm, defaults in cli.TRAIN_DEFAULTS.items()}
    widened["reptile"].update(init=None, clip_grad_norm=None)
    monkeypatch.setattr(cli, "TRAIN_DEFAULTS", widened)
    assert train_help("--init").endswith("(metasgd, maml, reptile; default auto (He before ReLU, Glorot otherwise) with one inner step, glorot with more)")
    assert train_help("--clip-grad-norm").endswith("(metasgd, maml, reptile; default no clipping)")


def test_defaults_help_shows_what_a_default_of_none_means():
    assert cli.defaults_help("init") == "metasgd, maml; default None"
    assert cli.defaults_help("init", none="auto") == "metasgd, maml; default auto"
    assert cli.defaults_help("meta_lr", none="unused") == cli.defaults_help("meta_lr")  # no None default there


def test_alpha_init_zero_is_accepted(tmp_path):
    model = tmp_path / "m.npz"
    assert main(["train", "metasgd", *TINY, "--iterations", "1", "--alpha-init", "0", "--save", str(model)]) == 0
    assert saved_config(model)["alpha_init"] == 0.0


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_every_init_scheme_is_accepted(scheme):
    assert cli.init_scheme(scheme) == scheme


@pytest.mark.parametrize("learner,steps", [(mf.MetaSGD(mf.MLP([1, 2, 1]), inner_steps=3), 3),
                                           (mf.MAML(mf.MLP([1, 2, 1]), inner_steps=2), 2),
                                           (mf.Reptile(mf.MLP([1, 2, 1])), 10)], ids=["metasgd", "maml", "reptile"])
def test_plots_adapt_with_the_inner_steps_of_training(learner, steps):
    # MAML is no longer a kind of MetaSGD: it was plotted after 10 steps whatever it trained with
    assert cli.default_steps(learner) == steps


def test_metasgd_defaults(tmp_path):
    model = tmp_path / "m.npz"
    assert main(["train", "metasgd", "--iterations", "1", "--hidden", "4", "--quiet", "--save", str(model)]) == 0
    config = saved_config(model)
    assert (config["alpha_init"], config["meta_lr"], config["inner_steps"]) == (0.01, 1e-3, 1)
    assert len(mf.load(model).history) == 1


def test_unreadable_model_files(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.npz")]) == 2
    (tmp_path / "junk.npz").write_text("not a model")
    assert main(["evaluate", str(tmp_path / "junk.npz")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2
    assert "No such file" in errors[0] and "not a readable metafast model file" in errors[1]


def sine_sampler(num_tasks, rng):
    return mf.tasks.Sinusoid().sample(num_tasks, seed=int(rng.integers(2**31)))


TRAINED_FROM_PYTHON = {
    "untrained": (lambda learner: None, "holds an untrained model, which names no task family"),
    "sampler": (lambda learner: learner.fit(sine_sampler, iterations=2, meta_batch=2, progress=False),
                "was trained on a Python sampler (or on batches given to meta_step): the file does not hold its tasks"),
    "user-data": (lambda learner: learner.fit(mf.tasks.Sinusoid().sample(4), iterations=2, meta_batch=2,
                                              progress=False),
                  "was trained on a TaskPool family of the user's data, which the file does not hold"),
}


@pytest.mark.parametrize("train,message", TRAINED_FROM_PYTHON.values(), ids=TRAINED_FROM_PYTHON.keys())
def test_evaluating_a_model_trained_from_python_says_how_to(tmp_path, capsys, train, message):
    learner = mf.MetaSGD(mf.MLP([1, 4, 1]), num_threads=1)
    train(learner)
    model = tmp_path / "m.npz"
    learner.save(model)
    assert main(["evaluate", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"{model} {message}: evaluate it from Python, with learner = metafast.load('{model}') and then " \
           "learner.evaluate(your_tasks)" in err and err.count("\n") == 1, err


def test_plots_without_matplotlib_say_how_to_get_it(tmp_path, capsys, monkeypatch):
    def missing():
        raise plot.PlottingUnavailable("plotting needs matplotlib: install it with pip install 'metafast[plot]'")

    monkeypatch.setattr(plot, "pyplot", missing)
    assert main(["demo", "--scale", "0.001", "--tasks", "5", "--quiet", "--out", str(tmp_path / "d.png")]) == 1
    assert "pip install 'metafast[plot]'" in capsys.readouterr().err


def test_python_dash_m_and_version():
    result = subprocess.run([sys.executable, "-m", "metafast", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"metafast {mf.__version__}"
    result = subprocess.run([sys.executable, "-m", "metafast", "train"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out


def test_rl_train_evaluate_and_demo(tmp_path, capsys, monkeypatch):
    model = tmp_path / "rl.npz"
    picture = tmp_path / "rl.png"
    assert main(["train", "metasgd-rl", "--iterations", "2", "--meta-batch", "2", "--hidden", "8", "--trajectories", "4",
                 "--quiet", "--save", str(model), "--plot", str(picture)]) == 0
    read_png(picture)
    capsys.readouterr()
    assert main(["evaluate", str(model), "--tasks", "3", "--quiet"]) == 0
    assert "return" in capsys.readouterr().out
    # --out metafast-demo.png is honoured with --rl too (it was the sentinel of the RL default name)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--rl", "--scale", "0.01", "--tasks", "3", "--quiet", "--out", "metafast-demo.png"]) == 0
    read_png(tmp_path / "metafast-demo.png")
    assert "3 held-out tasks" in capsys.readouterr().out
    assert main(["train", "reptile", "--task", "nav2d", "--save", str(model)]) == 2


def test_info_shows_the_level_in_use(capsys):
    assert main(["info"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    info = mf.build_info()
    assert lines["level"] == info["level"]
    assert lines["levels_supported"] == ", ".join(info["levels_supported"])


def test_hostile_model_files_give_one_line_and_exit_2(tmp_path, capsys):
    entries = saved_entries(tmp_path)
    paths = [write(tmp_path / "deep.npz", with_config(entries, deep_json(100_000))),  # was a RecursionError
             write(tmp_path / "huge.npz", entries, headers={"theta": dict(shape=(2**40,))}),  # a MemoryError
             with_compression_method(write(tmp_path / "method.npz", entries), "theta", 99),  # NotImplementedError
             with_first_data_byte(write(tmp_path / "inflate.npz", entries, compression=zipfile.ZIP_DEFLATED),
                                  "theta", 0xFF)]  # zlib.error
    for path in paths:
        assert main(["evaluate", str(path), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"metafast evaluate: error: {path} ") and err.count("\n") == 1, err
    (tmp_path / "file").write_text("")
    assert main(["evaluate", str(tmp_path / "file" / "m.npz")]) == 2  # was a NotADirectoryError
    assert "Not a directory" in capsys.readouterr().err


def test_destinations_are_checked_before_training(tmp_path, capsys, monkeypatch):
    def train(*args, **kwargs):
        raise AssertionError("trained before checking where the results go")

    monkeypatch.setattr(Learner, "_train", train)
    a_file = tmp_path / "file"
    a_file.write_text("")
    commands = {
        "not-a-folder": (["train", "metasgd", "--save", str(a_file / "m.npz")], "Not a directory"),
        "rl-not-a-folder": (["train", "metasgd-rl", "--save", str(a_file / "m.npz")], "Not a directory"),
        "missing-folder": (["train", "reptile", "--save", str(tmp_path / "missing" / "m.npz")], "No such file"),
        "long-name": (["train", "metasgd", "--save", str(tmp_path / ("m" * 300 + ".npz"))], "File name too long"),
        "empty-name": (["train", "metasgd", "--save", ""], "names no file"),
        "a-folder": (["train", "metasgd", "--save", str(tmp_path)], "is a directory"),
        "plot": (["train", "metasgd", "--save", str(tmp_path / "m.npz"), "--plot", str(a_file / "p.png")],
                 "Not a directory"),
        "demo": (["demo", "--out", str(a_file / "d.png")], "Not a directory"),
        "demo-rl": (["demo", "--rl", "--out", str(a_file / "d.png")], "Not a directory"),
        "demo-omniglot": (["demo", "--omniglot", "--out", str(a_file / "d.png")], "Not a directory"),
    }
    for name, (argv, message) in commands.items():
        assert main([*argv, "--quiet"]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"metafast {argv[0]}: error: --") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.npz").exists()


def test_ctrl_c_during_train_saves_the_model_reached(tmp_path):
    model = tmp_path / "m.npz"
    child = subprocess.Popen([sys.executable, "-m", "metafast", "train", "metasgd", "--iterations", "100000000",
                              "--quiet", "--threads", "1", "--save", str(model)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # past the start-up, into the training
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=20) == 130
        errors = child.stderr.read()
    finally:
        child.kill()
        child.wait()
        child.stderr.close()
    assert "saved the model reached" in errors and "interrupted" in errors
    saved = mf.load(model)
    assert saved.iteration > 0 and len(saved.history) == saved.iteration


TINY = ["--hidden", "4", "--meta-batch", "3", "--quiet", "--threads", "1"]


def test_checkpoint_every_saves_the_run_as_it_goes(tmp_path, monkeypatch):
    saved_at = []
    save = Learner.save
    monkeypatch.setattr(Learner, "save", lambda self, path: (saved_at.append(self.iteration), save(self, path)))
    model = tmp_path / "m.npz"
    assert main(["train", "metasgd", *TINY, "--iterations", "12", "--checkpoint-every", "5", "--save", str(model)]) == 0
    assert saved_at == [5, 10, 12] and mf.load(model).iteration == 12


def test_resume_takes_the_recorded_meta_batch_and_refuses_another(tmp_path, capsys):
    part, resumed, whole = tmp_path / "part.npz", tmp_path / "resumed.npz", tmp_path / "whole.npz"
    assert main(["train", "metasgd", *TINY, "--iterations", "2", "--save", str(part)]) == 0
    assert mf.load(part).meta_batch == 3
    assert main(["train", "metasgd", "--quiet", "--iterations", "4", "--resume", str(part), "--meta-batch", "5",
                 "--save", str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err
    assert f"{part} was trained with --meta-batch 3; only the same continues the run bit for bit: leave " \
           "--meta-batch out (or give 3)" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.npz").exists()
    assert main(["train", "metasgd", "--quiet", "--iterations", "4", "--resume", str(part), "--save", str(resumed)]) == 0
    assert main(["train", "metasgd", *TINY, "--iterations", "4", "--save", str(whole)]) == 0
    np.testing.assert_array_equal(mf.load(resumed).theta, mf.load(whole).theta)


def test_resume_of_a_file_without_a_recorded_meta_batch_needs_one(tmp_path, capsys):
    part = tmp_path / "part.npz"
    assert main(["train", "metasgd", *TINY, "--iterations", "2", "--save", str(part)]) == 0
    learner = mf.load(part)
    learner._meta_batch = None  # as a file from before the meta-batch was recorded
    learner.save(part)
    assert main(["train", "metasgd", "--quiet", "--iterations", "4", "--resume", str(part),
                 "--save", str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err
    assert f"--resume needs --meta-batch, the one {part} was trained with: the file does not record it, and only " \
           "the same meta-batch continues the run bit for bit" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("algorithm,options", [("metasgd", []), ("reptile", ["--task", "nway"]),
                                               ("metasgd-rl", ["--trajectories", "2"]),
                                               ("maml", ["--task", "omniglot", "--query", "1", "--shift", "1"])])
def test_resume_continues_bit_for_bit(tmp_path, algorithm, options):
    part, resumed, whole = tmp_path / "part.npz", tmp_path / "resumed.npz", tmp_path / "whole.npz"
    assert main(["train", algorithm, *TINY, *options, "--iterations", "4", "--save", str(part)]) == 0
    assert main(["train", algorithm, "--meta-batch", "3", "--quiet", "--iterations", "7", "--resume", str(part),
                 "--save", str(resumed)]) == 0
    assert main(["train", algorithm, *TINY, *options, "--iterations", "7", "--save", str(whole)]) == 0
    a, b = mf.load(resumed), mf.load(whole)
    assert a.iteration == 7
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.history, b.history)


def test_resume_refuses_what_the_file_decides(tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert main(["train", "metasgd", *TINY, "--iterations", "2", "--save", str(model)]) == 0
    bare = tmp_path / "bare.npz"
    mf.MetaSGD(mf.MLP([1, 4, 1])).save(bare)
    cases = {
        "learner-option": (["metasgd", "--hidden", "8", "--alpha-init", "0.1"], "leave out --hidden, --alpha-init"),
        "seed": (["metasgd", "--seed", "3"], "leave out --seed"),
        "other-algorithm": (["reptile"], "holds a MetaSGD learner, not reptile"),
        "done-already": (["metasgd", "--iterations", "2"], "already holds 2 meta-iterations"),
    }
    for name, (argv, message) in cases.items():
        assert main(["train", *argv, "--resume", str(model), "--save", str(tmp_path / "out.npz"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (name, err)
    assert main(["train", "metasgd", "--resume", str(bare), "--save", str(tmp_path / "out.npz")]) == 2
    assert "holds an untrained model, which names no task family, so it records no task family the command line " \
           "trains on: resume it from Python" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()


def test_hidden_takes_widths_or_none(tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert main(["train", "metasgd", "--hidden", "none", "--iterations", "1", "--quiet", "--save", str(model)]) == 0
    assert tuple(mf.load(model).model.sizes) == (1, 1)
    assert main(["train", "metasgd", "--hidden", "--iterations", "1", "--save", str(model)]) == 2
    assert "argument --hidden: expected at least one argument" in capsys.readouterr().err
    assert main(["train", "metasgd", "--hidden", "8", "x", "--save", str(model)]) == 2
    assert "--hidden takes positive layer widths or 'none', got 8 x" in capsys.readouterr().err


def test_evaluate_seed_is_the_seed_of_the_held_out_tasks(tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert main(["train", "metasgd", *TINY, "--iterations", "2", "--save", str(model)]) == 0
    outputs = []
    for option in (["--seed", "7"], ["--eval-seed", "7"], ["--seed", "8"]):
        capsys.readouterr()
        assert main(["evaluate", str(model), "--tasks", "20", *option]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] != outputs[2]


def test_options_that_do_not_apply_are_refused(capsys):
    for argv, message in ((["metasgd-rl", "--support", "5"], "--support does not apply to metasgd-rl"),
                          (["metasgd", "--inner-lr", "0.1"], "--inner-lr does not apply to metasgd"),
                          (["reptile", "--alpha-init", "0.1"], "--alpha-init does not apply to reptile")):
        assert main(["train", *argv, "--save", "m.npz"]) == 2
        assert message in capsys.readouterr().err


def test_every_train_option_is_documented_with_its_default():
    from metafast.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    undocumented, without_default = [], []
    for action in train._actions:
        if action.dest in ("help", "algorithm"):
            continue
        if not action.help:
            undocumented.append(action.dest)
        flag = action.nargs == 0
        if not flag and action.dest not in ("save", "plot", "resume") and "default" not in action.help:
            without_default.append(action.dest)
    assert undocumented == [] and without_default == []


def test_train_maml_and_the_multi_step_options(tmp_path, capsys):
    model = tmp_path / "maml.npz"
    assert main(["train", "maml", *TINY, "--iterations", "3", "--inner-steps", "2", "--inner-lr", "0.05",
                 "--init", "normal:0.01", "--clip-grad-norm", "5", "--save", str(model)]) == 0
    maml = mf.load(model)
    assert type(maml).__name__ == "MAML" and (maml.inner_lr, maml.inner_steps, maml.clip_grad_norm) == (0.05, 2, 5.0)
    assert saved_config(model)["init"] == ["normal", 0.01]
    assert main(["evaluate", str(model), "--tasks", "5"]) == 0
    per_step = tmp_path / "per-step.npz"
    assert main(["train", "metasgd", *TINY, "--iterations", "2", "--inner-steps", "3", "--alpha-per-step",
                 "--save", str(per_step)]) == 0
    assert mf.load(per_step).alpha.shape == (3, mf.load(per_step).model.num_params)
    capsys.readouterr()
    for argv, message in ((["maml", "--alpha-per-step"], "--alpha-per-step does not apply to maml"),
                          (["maml", "--alpha-init", "0.1"], "--alpha-init does not apply to maml"),
                          (["metasgd", "--init", "xavier"], "argument --init: must be auto, he, glorot, pytorch")):
        assert main(["train", *argv, "--save", str(tmp_path / "x.npz")]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("algorithm", ["metasgd", "maml", "reptile"])
def test_model_conv_trains_a_convnet_with_the_options_given_and_resumes_bit_for_bit(tmp_path, algorithm):
    conv = ["--task", "nway", "--support", "2", "--model", "conv", "--input-shape", "2", "1", "4", "--channels", "3",
            "--stride", "1", "--padding", "valid", "--kernel-size", "1", "--batch-norm-scale", "--head", "flatten",
            "--activation", "tanh"]
    part, resumed, whole = tmp_path / "part.npz", tmp_path / "resumed.npz", tmp_path / "whole.npz"
    assert main(["train", algorithm, *TINY[2:], *conv, "--iterations", "3", "--save", str(part)]) == 0
    assert main(["train", algorithm, "--quiet", "--iterations", "5", "--resume", str(part), "--save",
                 str(resumed)]) == 0
    assert main(["train", algorithm, *TINY[2:], *conv, "--iterations", "5", "--save", str(whole)]) == 0
    a, b = mf.load(resumed), mf.load(whole)
    assert a.model == b.model == mf.ConvNet((2, 1, 4), channels=(3,), outputs=5, kernel_size=1, stride=1,
                                            padding="valid", batch_norm_scale=True, head="flatten", activation="tanh")
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.history, b.history)


def test_model_conv_defaults_are_convnets_own(tmp_path):
    model = tmp_path / "m.npz"
    assert main(["train", "maml", *TINY[2:], "--task", "nway", "--model", "conv", "--iterations", "1",
                 "--save", str(model)]) == 0
    dim = mf.tasks.GaussianNWay().dim
    assert mf.load(model).model == mf.ConvNet((1, 1, dim), outputs=5)


def test_convnet_options_need_model_conv_and_fit_the_task(tmp_path, capsys):
    for argv, message in ((["metasgd", "--channels", "4"], "--channels shape a ConvNet: add --model conv"),
                          (["metasgd", "--model", "conv", "--hidden", "4"], "--hidden shapes an MLP; a ConvNet takes"),
                          (["metasgd", "--model", "conv", "--input-shape", "1", "2", "2"],
                           "--input-shape 1 2 2 holds 4 values, but the task's input rows have 1"),
                          (["metasgd-rl", "--model", "conv"], "metasgd-rl's policy is an MLP"),
                          (["metasgd", "--model", "conv", "--padding", "valid", "--channels", "2"],
                           "is too small: block 1's convolution"),
                          (["maml", "--task", "nway", "--model", "conv", "--input-shape", "1", "2", "4", "--pool", "max",
                            "--stride", "1", "--channels", "2", "2"], "is too small: block 2's 2x2 max-pool")):
        assert main(["train", *argv, "--save", str(tmp_path / "m.npz")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


# A tiny Omniglot run: 20-way 1-shot tasks of small1 in 4 rotations (the defaults), 1 query image.
OMNIGLOT_TINY = ["--task", "omniglot", "--ways", "20", "--shots", "1", "--query", "1", "--iterations", "2",
                 "--meta-batch", "2", "--quiet", "--threads", "1"]
HELD_OUT = ["Japanese_(katakana)", "Sanskrit", "Tagalog"]


@pytest.mark.parametrize("model,options", [("conv", ["--channels", "4", "4"]), ("mlp", ["--hidden", "8"])])
def test_train_omniglot_then_evaluate_on_held_out_alphabets(tmp_path, capsys, model, options):
    saved = tmp_path / "omniglot.npz"
    assert main(["train", "maml", *OMNIGLOT_TINY, "--model", model, *options, "--save", str(saved)]) == 0
    learner = mf.load(saved)
    expected = (mf.ConvNet((1, 28, 28), channels=(4, 4), outputs=20) if model == "conv"
                else mf.MLP([784, 8, 20], activation="relu"))
    assert learner.model == expected and learner.iteration == 2
    assert learner.tasks == mf.tasks.Omniglot(subset="small1", ways=20, shots=1, query=1, rotations=4)
    assert saved_config(saved)["tasks"]["family"] == "Omniglot"  # rebuilt from its fields: no data in the file
    capsys.readouterr()
    # By default, the model's alphabets without the rotations of meta-training
    assert main(["evaluate", str(saved), "--tasks", "3", "--steps", "0", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "alphabets=('Balinese', 'Early_Aramaic', 'Greek', 'Korean', 'Latin'), subset='small1', ways=20, " \
           "shots=1, query=1, rotations=1, shift=0, within_alphabet=False)" in text
    assert "3 held-out tasks" in text and "accuracy" in text
    assert main(["evaluate", str(saved), "--tasks", "3", "--steps", "0", "1", "--subset", "small2", "--alphabets",
                 *HELD_OUT, "--shots", "5", "--within-alphabet", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Omniglot(alphabets=('Japanese_(katakana)', 'Sanskrit', 'Tagalog'), subset='small2', ways=20, shots=5, " \
           "query=1, rotations=1, shift=0, within_alphabet=True)" in text and "3 held-out tasks" in text
    # --subset alone: every alphabet of it; the model's --ways is accepted
    assert main(["evaluate", str(saved), "--tasks", "2", "--subset", "small2", "--rotations", "2", "--ways", "20",
                 "--quiet"]) == 0
    assert "alphabets=('Greek', 'Japanese_(katakana)', 'Latin', 'Sanskrit', 'Tagalog'), subset='small2', " \
           "ways=20, shots=1, query=1, rotations=2," in capsys.readouterr().out


def test_train_omniglot_defaults():
    args = cli.build_parser().parse_args(["train", "maml", "--task", "omniglot", "--save", "m.npz"])
    family = cli.make_family(args)
    signature = inspect.signature(mf.tasks.Omniglot).parameters
    assert (family.subset, family.rotations) == ("small1", 4)  # meta-training's, not the family's
    assert family.alphabets == mf.datasets.omniglot_subsets()["small1"]
    for name in ("ways", "shots", "query", "shift", "within_alphabet"):
        assert getattr(family, name) == signature[name].default, name


OMNIGLOT_REFUSALS = {
    "unknown-alphabet": (["maml", "--task", "omniglot", "--alphabets", "Klingon", "Latin"],
                         "--alphabets: Klingon is not among the alphabets of --subset small1: Balinese, "
                         "Early_Aramaic, Greek, Korean, Latin"),
    "alphabet-of-another-subset": (["maml", "--task", "omniglot", "--alphabets", "Tagalog"],
                                   "Korean, Latin (--subset small2 holds them all)"),
    "omniglot-options-for-nway": (["maml", "--task", "nway", "--alphabets", "Latin", "--rotations", "2"],
                                  "--alphabets, --rotations apply only to --task omniglot, not --task nway"),
    "omniglot-option-for-sine": (["metasgd", "--within-alphabet"],
                                 "--within-alphabet applies only to --task omniglot, not --task sine"),
    "ways-for-sine": (["reptile", "--ways", "3"], "--ways applies only to --task nway and --task omniglot, not "
                                                  "--task sine"),
    "omniglot-option-for-rl": (["metasgd-rl", "--subset", "small2"],
                               "--subset applies only to --task omniglot, not --task nav2d"),
    "rotations-beyond-4": (["maml", "--task", "omniglot", "--rotations", "5"], "rotations must be at most 4, got 5"),
}


@pytest.mark.parametrize("argv,message", OMNIGLOT_REFUSALS.values(), ids=OMNIGLOT_REFUSALS.keys())
def test_train_refuses_omniglot_options_that_do_not_fit(tmp_path, capsys, argv, message):
    assert main(["train", *argv, "--save", str(tmp_path / "m.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.npz").exists()


def test_evaluate_refuses_held_out_changes_that_do_not_fit(tmp_path, capsys):
    omniglot, sine = tmp_path / "omniglot.npz", tmp_path / "sine.npz"
    assert main(["train", "maml", *OMNIGLOT_TINY, "--hidden", "4", "--save", str(omniglot)]) == 0
    assert main(["train", "metasgd", *TINY, "--iterations", "1", "--save", str(sine)]) == 0
    capsys.readouterr()
    cases = {
        "other-ways": ([str(omniglot), "--ways", "5"], f"--ways 5: the model in {omniglot} has 20 outputs, one per "
                                                       "class of a task, so its tasks are 20-way (leave --ways out)"),
        "unknown-alphabet": ([str(omniglot), "--alphabets", "Klingon"],
                             "--alphabets: Klingon is not among the alphabets of --subset small1: Balinese,"),
        "held-out-of-another-subset": ([str(omniglot), "--alphabets", *HELD_OUT],
                                       "Korean, Latin (--subset small2 holds them all)"),
        "sine-model": ([str(sine), "--subset", "small2", "--shots", "2"],
                       f"--subset, --shots apply only to models trained on --task omniglot; {sine} was trained on "
                       "Sinusoid("),
    }
    for name, (argv, message) in cases.items():
        assert main(["evaluate", *argv, "--tasks", "2", "--quiet"]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("metafast evaluate: error: ") and message in err and err.count("\n") == 1, (name, err)


def test_demo_omniglot_writes_a_picture_of_held_out_episodes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--omniglot", "--scale", "0.002", "--tasks", "5", "--quiet", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "2 meta-iterations x 8 tasks" in text and "Japanese_(katakana), Sanskrit, Tagalog" in text
    assert "5 held-out tasks" in text and "held-out 5-way 1-shot accuracy after 1 step: " in text
    image = read_png(tmp_path / "metafast-demo-omniglot.png")  # the default --out
    assert image.shape[0] > 300 and image.shape[1] > 900
