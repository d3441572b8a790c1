"""The Omniglot protocol's harness (benchmarks/omniglot.py, reproduce.py --sections omniglot):
the quick run completes with every row of its tables, every method is scored on the same
episodes, the baselines and the feature readout compute what they claim, results do not depend
on the number of processes, and the section replaces only its block of docs/results.md.
(Accuracies are the benchmark's business, never the tests'.)"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import metafast as mf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import omniglot  # noqa: E402
import reproduce  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run of the whole section through reproduce.py's command line: its stdout, its
    JSON, and the results file it must leave alone."""
    folder = tmp_path_factory.mktemp("omniglot")
    results = folder / "results.md"
    results.write_text("# before\n", encoding="utf-8")
    patch = pytest.MonkeyPatch()
    patch.setattr(reproduce, "RESULTS", results)
    captured = []
    patch.setattr("builtins.print", lambda *args, **kwargs: captured.append(" ".join(map(str, args)))
                  if kwargs.get("file") is None else None)
    try:
        reproduce.main(["--sections", "omniglot", "--quick", "--json", str(folder / "raw.json"),
                        "--save-dir", str(folder / "saved")])
    finally:
        patch.undo()
    return dict(text="\n".join(captured), raw=json.loads((folder / "raw.json").read_text(encoding="utf-8")),
                results=results, saved=folder / "saved")


def test_quick_run_gives_every_row_and_writes_no_docs(quick):
    text, raw = quick["text"], quick["raw"]
    assert quick["results"].read_text(encoding="utf-8") == "# before\n"
    assert text.startswith(omniglot.MARK_START) and text.rstrip().endswith(omniglot.MARK_END)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "-way" in line.split("|")[1]]
    learners = [f"{learner}-{model}" for learner in omniglot.LEARNERS for model in omniglot.MODELS]
    methods = learners + [f"{m}-features" for m in learners] + ["pixel-nn", "pixel-ncm", "scratch-conv"]
    for key, direction in omniglot.directions().items():
        assert f"### {direction.name}" in text
        cells = raw["directions"][key]["cells"]
        assert set(cells) == {test.key for test in omniglot.TEST_SETTINGS}
        for test in omniglot.TEST_SETTINGS:
            assert set(cells[test.key]) == set(methods)
            for method in methods:
                assert len(cells[test.key][method]["correct"]) == omniglot.QUICK[
                    "scratch_episodes" if method == "scratch-conv" else "episodes"]
                assert any(f"| {test.label} | {omniglot.method_label(method)} |" in row for row in rows), method
        trainings = raw["directions"][key]["trainings"]
        assert len(trainings) == 2 * len(learners) and all(t["iterations"] == 2 for t in trainings.values())
    # 2 directions x (2 five-way settings + 3 twenty-way) x methods, plus the published rows.
    assert len(rows) == 2 * 5 * len(methods) + 2 * 3
    assert text.count("Every meta-learner above every baseline") == 2
    assert text.count("Best meta-learner ≤ 20% error") == 2
    assert "Tagalog has fewer" in text
    # Every trained learner was saved, with its training record, and loads back.
    assert len(list(quick["saved"].glob("*.npz"))) == len(list(quick["saved"].glob("*.json"))) == 2 * 2 * 8
    loaded = mf.load(quick["saved"] / "omniglot-small1-20way-maml-conv.npz")
    assert loaded.iteration == 2 and loaded.model.outputs == 20


def test_every_method_is_scored_on_the_same_episodes(quick):
    directions = omniglot.directions()
    for key, entry in quick["raw"]["directions"].items():
        for test in omniglot.TEST_SETTINGS:
            methods = entry["cells"][test.key]
            prints = {result["episodes_sha256"] for result in methods.values()}
            # Drawn again here, with another thread count: the same episodes.
            batch = omniglot.episodes(directions[key], test, omniglot.QUICK["episodes"], threads=1)
            assert prints == {omniglot.fingerprint(batch)}
            assert all(result["query"] == test.ways * omniglot.TEST_QUERY for result in methods.values())


def test_test_alphabets_are_the_other_subsets_new_ones():
    subsets = mf.datasets.omniglot_subsets()
    directions = omniglot.directions()
    assert directions["small1"].test_alphabets == ("Japanese_(katakana)", "Sanskrit", "Tagalog")
    assert directions["small2"].test_alphabets == ("Balinese", "Early_Aramaic", "Korean")
    for key, direction in directions.items():
        assert not set(direction.test_alphabets) & set(subsets[key])
    assert omniglot.short_alphabets(directions["small1"], 20) == ["Tagalog"]
    within = omniglot.episodes(directions["small1"], omniglot.TestSetting(20, 1, True), 3)
    assert within.x_support.shape == (3, 20, 784)


def _episode(support, labels, query, query_labels):
    support, query = np.asarray(support, np.float32), np.asarray(query, np.float32)
    pad = lambda rows: np.pad(rows, ((0, 0), (0, 784 - rows.shape[1])))  # noqa: E731
    return mf.TaskBatch(pad(support)[None], np.asarray(labels)[None], pad(query)[None], np.asarray(query_labels)[None])


def test_pixel_baselines_on_a_hand_made_episode():
    rng = np.random.default_rng(0)
    images = rng.random((3, 784)).astype(np.float32)
    batch = mf.TaskBatch(images[None], np.arange(3)[None], images[[2, 0, 1, 1]][None], np.array([[2, 0, 1, 1]]))
    # The identical image is the nearest: every query right.
    assert omniglot.pixel_nn(batch.x_support[0], batch.y_support[0], batch.x_query[0], 3).tolist() == [2, 0, 1, 1]
    assert omniglot.correct_counts(omniglot.pixel_nn, batch, 3).tolist() == [4]
    # Nearest neighbour and nearest class mean disagree: class 0 at 0 and 10, class 1 at 6 and 6;
    # a query at 9 is nearest to a class-0 image but to the class-1 mean (5 against 6).
    batch = _episode([[0.0], [6.0], [10.0], [6.0]], [0, 1, 0, 1], [[9.0], [1.0]], [0, 0])
    assert omniglot.pixel_nn(batch.x_support[0], batch.y_support[0], batch.x_query[0], 2).tolist() == [0, 0]
    assert omniglot.pixel_ncm(batch.x_support[0], batch.y_support[0], batch.x_query[0], 2).tolist() == [1, 0]
    assert omniglot.correct_counts(omniglot.pixel_ncm, batch, 2).tolist() == [1]
    result = omniglot.summary(np.array([1, 2, 2]), 2, "sha")
    assert result["accuracy"] == pytest.approx(5 / 6)
    assert result["ci95"] == pytest.approx(mf.evaluation.Z_95 * np.std([0.5, 1, 1], ddof=1) / np.sqrt(3))


def _perturbed(net, seed):
    """Parameters with every entry moved (biases and batch-norm shifts away from 0)."""
    theta = net.init(seed=seed, dtype="float64")
    return theta + np.random.default_rng(seed).normal(0, 0.1, theta.shape)


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_features_are_what_the_output_layer_reads(kind):
    net = mf.ConvNet((1, 28, 28), channels=(8, 8, 8, 8), outputs=5) if kind == "conv" else \
        mf.MLP([784, 32, 16, 5], activation="relu")
    theta = _perturbed(net, 3)
    x = np.random.default_rng(4).random((12, 784))
    body, params = omniglot.feature_network(net, theta)
    values = omniglot.features(body, params, x)
    if kind == "conv":
        last = net.unflatten(theta)[-1]
        weight, bias = last["weight"], last["bias"]
        assert values.shape == (12, net.features)
    else:
        (w1, b1), (w2, b2), (weight, bias) = net.unflatten(theta)
        direct = np.maximum(np.maximum(x @ w1 + b1, 0) @ w2 + b2, 0)  # the last hidden layer keeps its ReLU
        np.testing.assert_allclose(values, direct, rtol=1e-12, atol=1e-12)
    assert (values >= 0).all() and (values > 0).any()
    np.testing.assert_allclose(values @ weight + bias, net.forward(theta, x), rtol=1e-10, atol=1e-10)
    # The readout passes support and query rows together (batch norm over both).
    readout = omniglot.feature_ncm(body, params)
    predictions = readout(x[:5], np.arange(5), x[5:], 5)
    expected = omniglot.nearest(values[:5], np.arange(5), values[5:])
    assert predictions.tolist() == expected.tolist()


def test_results_do_not_depend_on_the_number_of_processes(quick):
    # The quick run's settings in two processes of one thread each (the fixture: one process of
    # the cores' threads), for one training per ways and the baselines of one direction.
    config = omniglot.Config(minutes=None, **omniglot.QUICK,
                             directions=("small2",), learners=("fomaml",), models=("mlp",), quick=True, jobs=2)
    assert config.learner_threads == max(1, (os.cpu_count() or 1) // 2)
    two = omniglot.run(config)["directions"]["small2"]
    one = quick["raw"]["directions"]["small2"]
    for test_key, methods in two["cells"].items():
        assert set(methods) == {"fomaml-mlp", "fomaml-mlp-features", "pixel-nn", "pixel-ncm", "scratch-conv"}
        for method, result in methods.items():
            assert result == one["cells"][test_key][method], (test_key, method)
    for name, training in two["trainings"].items():
        assert training["iterations"] == one["trainings"][name]["iterations"] == 2


@pytest.mark.parametrize("learner", ["maml", "reptile"])
def test_a_time_budget_stops_training(learner):
    config = omniglot.Config(minutes=0.01, quick=True, threads=1)
    setting = omniglot.setting_for(learner, 5, config)
    model = omniglot.build_learner(learner, setting, omniglot.network("mlp", 5, quick=True), 1, 5)
    direction = omniglot.directions()["small1"]
    record = omniglot.train(model, omniglot.training_family(direction, 5, setting), setting, config)
    assert record["iterations"] == model.iteration >= 1
    assert record["seconds"] < 0.6 + 5.0
    assert (record["planned"] is not None) == (learner == "reptile")


def test_the_section_replaces_only_its_block(tmp_path, monkeypatch, quick):
    block = omniglot.markdown(quick["raw"])  # the JSON reads back into the same table
    assert block == quick["text"].strip()
    document = "# metafast\n\ntext\n\n" + omniglot.replace_block("", "<!-- omniglot:start -->\nold\n<!-- omniglot:end -->")
    assert omniglot.replace_block(document, block) == "# metafast\n\ntext\n\n" + block + "\n"
    assert omniglot.replace_block("# metafast\n", block) == "# metafast\n\n" + block + "\n"
    assert omniglot.existing_block(omniglot.replace_block(document, block)) == block
    # reproduce.py --sections omniglot, not quick: the block changes, the rest of the file stays.
    results = tmp_path / "results.md"
    results.write_text(document, encoding="utf-8")
    monkeypatch.setattr(reproduce, "RESULTS", results)
    monkeypatch.setattr(omniglot, "run", lambda config, log=None: quick["raw"])
    reproduce.main(["--sections", "omniglot", "--iterations", "1"])
    assert results.read_text(encoding="utf-8") == "# metafast\n\ntext\n\n" + block + "\n"
    # The papers' run writes its document whole and keeps the block at its end.
    monkeypatch.setattr(reproduce, "run", lambda quick_run: ([["p", "l", "1", "2", ""]], ["note"]))
    reproduce.main([])
    written = results.read_text(encoding="utf-8")
    assert written.startswith("# metafast against the published results") and written.endswith(block + "\n")
    assert omniglot.existing_block(written) == block


def test_sections_option():
    assert reproduce.sections("all") == ("papers", "omniglot")
    assert reproduce.sections("omniglot") == ("omniglot",)
    assert reproduce.sections("omniglot,papers") == ("papers", "omniglot")
    with pytest.raises(Exception):
        reproduce.sections("sine")


def test_saved_learners_are_reused(quick):
    config = omniglot.Config(minutes=None, **omniglot.QUICK,
                             directions=("small1",), learners=("reptile",), models=("mlp",), quick=True,
                             save_dir=str(quick["saved"]), reuse=True)
    again = omniglot.run(config)["directions"]["small1"]
    first = quick["raw"]["directions"]["small1"]
    for name, training in again["trainings"].items():
        assert training["reused"] and training["iterations"] == first["trainings"][name]["iterations"]
    for test_key, methods in again["cells"].items():
        for method in ("reptile-mlp", "reptile-mlp-features"):
            assert methods[method] == first["cells"][test_key][method]
    # A learner saved with other settings is refused, not silently reused.
    with pytest.raises(ValueError, match="other settings"):
        omniglot.run_training(omniglot.Config(**{**config.__dict__, "quick": False}), "small1", 5, "reptile", "mlp")
