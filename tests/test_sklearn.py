"""metafast.sklearn: FewShotRegressor and FewShotClassifier as scikit-learn estimators (the
estimator checks, pipelines, cross-validation, grid search, clone) that adapt by the learner's
own ``adapt`` and predict by its ``predict``."""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys

import numpy as np
import pytest

import metafast as mf

sklearn = pytest.importorskip("sklearn", minversion="1.3")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402
from sklearn.utils.fixes import parse_version  # noqa: E402

from metafast.sklearn import FewShotClassifier, FewShotRegressor  # noqa: E402

SKLEARN_1_6 = parse_version(sklearn.__version__).release >= (1, 6)


# ------------------------------------------------------------------ learners
def linear_tasks(n: int, seed: int = 0) -> mf.tasks.Regression:
    """A pool of 50 random linear functions of ``n`` inputs, 20 rows each."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(50 * 20, n))
    w = rng.normal(size=(50, n))
    ids = np.repeat(np.arange(50), 20)
    return mf.tasks.Regression(x, np.einsum("ij,ij->i", x, w[ids])[:, None], ids, support=10, query=10)


def regression_learner(n: int, iterations: int = 20) -> mf.MetaSGD:
    learner = mf.MetaSGD(mf.MLP([n, 8, 1]), alpha_init=0.1, meta_lr=1e-2, num_threads=1)
    learner.fit(linear_tasks(n), iterations=iterations, meta_batch=4, progress=False)
    return learner


def softmax_learner(n: int, ways: int = 4, iterations: int = 20) -> mf.MetaSGD:
    learner = mf.MetaSGD(mf.MLP([n, 8, ways]), loss="softmax_ce", alpha_init=0.5, meta_lr=1e-2, num_threads=1)
    learner.fit(mf.tasks.GaussianNWay(ways=ways, dim=n, support=2, query=5), iterations=iterations, meta_batch=4,
                progress=False)
    return learner


def bce_learner(n: int, iterations: int = 20, output: str = "identity") -> mf.MetaSGD:
    learner = mf.MetaSGD(mf.MLP([n, 8, 1], output=output), loss="bce", alpha_init=0.5, meta_lr=1e-2, num_threads=1)
    learner.fit(mf.tasks.LinearBinary(dim=n, support=10, query=10), iterations=iterations, meta_batch=4,
                progress=False)
    return learner


# ------------------------------------------------------------ estimator checks
# The number of input features of the data each estimator check of scikit-learn (1.9) fits on,
# where it fits on one width only. A network has a fixed input width, so each of these checks
# can pass only with a network of its width: the suite runs every check at the widths below,
# and expects it to fail (with the estimator's ValueError naming both widths) at the others.
SHARED_CHECK_WIDTHS = {
    "check_fit2d_1feature": 1,
    "check_estimators_overwrite_params": 2,
    "check_estimators_fit_returns_self": 2,
    "check_readonly_memmap_input": 2,
    "check_fit_idempotent": 2,
    "check_fit_check_is_fitted": 2,
    "check_n_features_in": 2,
    "check_fit_score_takes_y": 3,
    "check_dont_overwrite_parameters": 3,
    "check_pipeline_consistency": 3,
    "check_estimators_nan_inf": 3,
    "check_estimators_pickle": 3,
    "check_f_contiguous_array_estimator": 3,
    "check_supervised_y_2d": 3,
    "check_methods_sample_order_invariance": 3,
    "check_methods_subset_invariance": 3,
    "check_dict_unchanged": 3,
    "check_fit2d_predict1d": 3,
    "check_n_features_in_after_fitting": 4,
    "check_positive_only_tag_during_fit": 4,
    "check_estimators_dtypes": 5,
    "check_dtype_object": 10,
}
REGRESSOR_CHECK_WIDTHS = dict(SHARED_CHECK_WIDTHS, check_regressors_no_decision_function=4,
                              check_regressors_train=10, check_regressors_int=10,
                              check_regressor_data_not_an_array=10, check_fit2d_1sample=10)
# A classifier names a wrong y (one class, continuous labels, too many classes) before it looks
# at X's width, so the checks of labels pass at every width.
CLASSIFIER_CHECK_WIDTHS = dict(SHARED_CHECK_WIDTHS, check_classifiers_classes=2, check_classifiers_train=2,
                               check_decision_proba_consistency=2, check_classifier_data_not_an_array=2)
WIDTHS = sorted(set(REGRESSOR_CHECK_WIDTHS.values()) | set(CLASSIFIER_CHECK_WIDTHS.values()))


def checked_estimators(widths: list[int]) -> list:
    estimators = []
    for n in widths:
        estimators += [FewShotRegressor(regression_learner(n)),
                       FewShotClassifier(softmax_learner(n)),  # 4 outputs: the checks use up to 4 classes
                       FewShotClassifier(bce_learner(n))]      # binary only
    return estimators


def expected_failed_checks(estimator) -> dict[str, str]:
    widths = REGRESSOR_CHECK_WIDTHS if isinstance(estimator, FewShotRegressor) else CLASSIFIER_CHECK_WIDTHS
    inputs = estimator.learner.model.sizes[0]
    return {check: f"fits on {width} features; this estimator's network takes {inputs}"
            for check, width in widths.items() if width != inputs}


def check_name(check) -> str:
    return (check.func if isinstance(check, functools.partial) else check).__name__


if SKLEARN_1_6:
    from sklearn.utils.estimator_checks import estimator_checks_generator  # noqa: E402

    def passing_checks() -> list:
        """Every check at each width it can pass at; test_expected_failures_are_the_width_error
        covers the others (listing them as expected failures would only fill the report)."""
        params = []
        for estimator in checked_estimators(WIDTHS):
            expected = expected_failed_checks(estimator)
            label = f"{type(estimator).__name__}({estimator.learner.loss}, {estimator.learner.model.sizes[0]} inputs)"
            params += [pytest.param(estimator, check, id=f"{label}-{check_name(check)}")
                       for estimator, check in estimator_checks_generator(estimator, mark=None)
                       if check_name(check) not in expected]
        return params

    @pytest.mark.parametrize("estimator,check", passing_checks())
    def test_sklearn_estimator_checks(estimator, check):
        check(estimator)

    # Every width-specific check fails at 2 inputs or at 3: between them, they meet every
    # expected failure.
    @pytest.mark.parametrize("estimator", checked_estimators([2, 3]), ids=repr)
    def test_expected_failures_are_the_width_error(estimator):
        """What the estimator checks at other widths meet: the ValueError naming both widths."""
        results = check_estimator(estimator, expected_failed_checks=expected_failed_checks(estimator), on_fail=None,
                                  on_skip=None)
        assert [result["check_name"] for result in results if result["status"] == "failed"] == []
        failed = {result["check_name"]: result["exception"] for result in results if result["status"] == "xfail"}
        assert set(failed) == set(expected_failed_checks(estimator))
        for name, failure in failed.items():
            assert "features, but the learner's network takes" in "".join(map(str, exception_chain(failure))), name


def exception_chain(error: BaseException | None) -> list[BaseException]:
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


# ------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def regressor_learner() -> mf.MetaSGD:
    return regression_learner(3, iterations=200)


@pytest.fixture(scope="module")
def classifier_learner() -> mf.MetaSGD:
    return softmax_learner(5, iterations=200)


@pytest.fixture(scope="module")
def regression_task() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    return x, x @ rng.normal(size=3)


@pytest.fixture(scope="module")
def classification_task() -> tuple[np.ndarray, np.ndarray]:
    task = mf.tasks.GaussianNWay(ways=4, dim=5, support=10, query=1).sample(1, seed=7)
    return task.x_support[0], task.y_support[0]


# ---------------------------------------------------------------- what it does
def learners(n: int, outputs: int = 1, loss: str = "mse") -> dict[str, mf.supervised.SupervisedLearner]:
    model = mf.MLP([n, 8, outputs])
    return {"MetaSGD": mf.MetaSGD(model, loss=loss, num_threads=1),
            "MAML": mf.MAML(model, loss=loss, inner_lr=0.1, num_threads=1),
            "Reptile": mf.Reptile(model, loss=loss, inner_batch=4, num_threads=1)}


@pytest.mark.parametrize("kind", ["MetaSGD", "MAML", "Reptile"])
@pytest.mark.parametrize("steps", [0, 1, 3])
def test_regressor_predicts_with_the_learners_adapted_parameters(kind, steps, regression_task):
    learner = learners(3)[kind]
    x, y = regression_task
    model = FewShotRegressor(learner, steps=steps).fit(x[:10], y[:10])
    params = learner.adapt(x[:10], y[:10, None], steps)
    np.testing.assert_array_equal(model.params_, params)
    np.testing.assert_array_equal(model.predict(x[10:]), learner.predict(x[10:], params)[:, 0])
    assert model.n_features_in_ == 3
    assert model.predict(x).shape == (30,)


@pytest.mark.parametrize("kind", ["MetaSGD", "MAML", "Reptile"])
def test_classifier_predicts_with_the_learners_adapted_parameters(kind, classification_task):
    learner = learners(5, outputs=4, loss="softmax_ce")[kind]
    x, labels = classification_task
    names = np.array(["ant", "bee", "cat", "dog"])
    model = FewShotClassifier(learner, steps=2).fit(x, names[labels])
    logits = learner.predict(x, learner.adapt(x, labels, 2))
    np.testing.assert_array_equal(model.classes_, names)
    np.testing.assert_array_equal(model.decision_function(x), logits)
    np.testing.assert_array_equal(model.predict(x), names[np.argmax(logits, axis=1)])
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba(x), expected / expected.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(model.predict_log_proba(x), np.log(model.predict_proba(x)), rtol=1e-6)


def test_classifier_with_fewer_classes_than_outputs_uses_their_logits(classification_task):
    learner = learners(5, outputs=4, loss="softmax_ce")["MetaSGD"]
    x, labels = classification_task
    keep = labels < 3
    model = FewShotClassifier(learner, steps=1).fit(x[keep], labels[keep] * 10)
    logits = learner.predict(x, learner.adapt(x[keep], labels[keep], 1))[:, :3]
    np.testing.assert_array_equal(model.classes_, [0, 10, 20])
    assert model.predict_proba(x).shape == (len(x), 3)
    np.testing.assert_array_equal(model.predict(x), model.classes_[np.argmax(logits, axis=1)])


def test_two_classes_of_a_softmax_learner_give_one_decision_column(classification_task):
    learner = learners(5, outputs=4, loss="softmax_ce")["MetaSGD"]
    x, labels = classification_task
    keep = labels < 2
    model = FewShotClassifier(learner).fit(x[keep], np.where(labels[keep] == 1, "yes", "no"))
    logits = learner.predict(x, model.params_)
    np.testing.assert_array_equal(model.decision_function(x), logits[:, 1] - logits[:, 0])
    np.testing.assert_array_equal(model.predict(x) == "yes", model.decision_function(x) > 0)


@pytest.mark.parametrize("output", ["identity", "sigmoid"])
def test_binary_classifier_on_a_bce_learner(output):
    learner = bce_learner(4, output=output)
    task = mf.tasks.LinearBinary(dim=4, support=20, query=10).sample(1, seed=3)
    x, y = task.x_support[0], task.y_support[0, :, 0]
    model = FewShotClassifier(learner, steps=3).fit(x, np.where(y > 0.5, "spam", "ham"))
    params = learner.adapt(x, y[:, None], 3)
    np.testing.assert_array_equal(model.params_, params)
    probability = model.predict_proba(x)[:, 1]
    reference = mf.MetaSGD(mf.MLP([4, 8, 1]), loss="bce").predict(x, params)[:, 0]  # the logits
    np.testing.assert_allclose(model.decision_function(x), reference, rtol=1e-6)
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-reference)), rtol=1e-5)
    if output == "sigmoid":
        np.testing.assert_allclose(probability, learner.predict(x, params)[:, 0], rtol=1e-5)
    np.testing.assert_array_equal(model.classes_, ["ham", "spam"])
    np.testing.assert_array_equal(model.predict(x), np.where(reference > 0, "spam", "ham"))


def test_multi_output_regressor():
    learner = mf.MetaSGD(mf.MLP([2, 8, 3]), num_threads=1)
    x = np.random.default_rng(0).normal(size=(12, 2))
    y = np.column_stack([x.sum(axis=1), x[:, 0], -x[:, 1]])
    model = FewShotRegressor(learner).fit(x, y)
    np.testing.assert_array_equal(model.predict(x), learner.predict(x, learner.adapt(x, y, 1)))
    assert model.__sklearn_tags__().target_tags.multi_output if SKLEARN_1_6 else True


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inputs_are_converted_to_the_learners_dtype(dtype):
    learner = mf.MetaSGD(mf.MLP([2, 8, 1]), dtype=dtype, num_threads=1)
    x = [[1, 2], [3, 4], [5, 6]]  # integers, in a list
    model = FewShotRegressor(learner).fit(x, [1, 2, 3])
    assert model.params_.dtype == dtype
    assert model.predict(np.asarray(x, dtype=np.float32)).dtype == dtype


def test_steps_none_adapts_as_in_meta_training(regression_task):
    learner = mf.MetaSGD(mf.MLP([3, 8, 1]), inner_steps=2, num_threads=1)
    x, y = regression_task
    model = FewShotRegressor(learner, steps=None).fit(x, y)
    np.testing.assert_array_equal(model.params_, learner.adapt(x, y[:, None], 2))


def test_fit_leaves_the_learner_unchanged(regressor_learner, regression_task):
    theta, iteration = regressor_learner.theta, regressor_learner.iteration
    FewShotRegressor(regressor_learner, steps=5).fit(*regression_task)
    np.testing.assert_array_equal(regressor_learner.theta, theta)
    assert regressor_learner.iteration == iteration


# ------------------------------------------------------------------ the ecosystem
def test_pipeline_with_standard_scaler(regressor_learner, regression_task):
    x, y = regression_task
    x = 100 + 10 * x  # far from the scale of meta-training
    pipeline = Pipeline([("scale", StandardScaler()), ("fewshot", FewShotRegressor(regressor_learner, steps=5))])
    pipeline.fit(x[:20], y[:20])
    scaled = StandardScaler().fit(x[:20]).transform(x)
    params = regressor_learner.adapt(scaled[:20], y[:20, None], 5)
    np.testing.assert_allclose(pipeline.predict(x[20:]), regressor_learner.predict(scaled[20:], params)[:, 0],
                               rtol=1e-5, atol=1e-5)
    assert pipeline.score(x[20:], y[20:]) > 0.5


def test_cross_val_score(classifier_learner, classification_task):
    x, labels = classification_task
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    scores = cross_val_score(FewShotClassifier(classifier_learner, steps=5), x, np.array(list("abcd"))[labels], cv=cv)
    assert scores.shape == (4,)
    assert scores.mean() > 0.4  # chance: 0.25
    before = cross_val_score(FewShotClassifier(classifier_learner, steps=0), x, labels, cv=cv)
    assert scores.mean() > before.mean()


def test_grid_search_over_steps(regressor_learner, regression_task):
    search = GridSearchCV(FewShotRegressor(regressor_learner), param_grid={"steps": [0, 1, 5]},
                          cv=KFold(3, shuffle=True, random_state=0))
    search.fit(*regression_task)
    scores = search.cv_results_["mean_test_score"]
    # Adapting helps; the learner was meta-trained for one step, so 5 steps can overshoot.
    assert search.best_params_["steps"] > 0
    assert scores[1] > scores[0]
    assert search.best_estimator_.learner is not regressor_learner  # a clone


@pytest.mark.parametrize("estimator_class", [FewShotRegressor, FewShotClassifier])
def test_get_params_set_params_and_clone(estimator_class, regressor_learner, classifier_learner):
    learner = regressor_learner if estimator_class is FewShotRegressor else classifier_learner
    model = estimator_class(learner, steps=3)
    assert model.get_params() == {"learner": learner, "steps": 3}
    assert model.set_params(steps=4) is model and model.steps == 4
    copy = clone(model)
    assert copy.steps == 4
    assert type(copy.learner) is type(learner) and copy.learner is not learner
    np.testing.assert_array_equal(copy.learner.theta, learner.theta)
    np.testing.assert_array_equal(copy.learner.alpha, learner.alpha)
    assert not hasattr(copy, "params_")


def test_clone_and_pickle_predict_the_same(regressor_learner, regression_task):
    x, y = regression_task
    model = FewShotRegressor(regressor_learner, steps=2).fit(x, y)
    np.testing.assert_array_equal(clone(model).fit(x, y).predict(x), model.predict(x))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict(x), model.predict(x))


def test_import_metafast_does_not_import_sklearn():
    code = "import sys, metafast; assert 'sklearn' not in sys.modules, 'imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize("estimator_class", [FewShotRegressor, FewShotClassifier])
@pytest.mark.parametrize("learner", [None, "MetaSGD", mf.MLP([3, 1])], ids=["None", "string", "MLP"])
def test_learner_must_be_a_supervised_learner(estimator_class, learner):
    with pytest.raises(TypeError, match="learner must be a meta-trained metafast supervised learner "
                                        r"\(MetaSGD, MAML or Reptile\), got "):
        estimator_class(learner).fit(np.zeros((4, 3)), [0, 1, 0, 1])


@pytest.mark.parametrize("steps, error, message", [(-1, ValueError, "steps must be at least 0, got -1"),
                                                   (1.5, TypeError, "steps must be an integer, got 1.5")])
def test_steps_must_be_a_count(steps, error, message, regression_task):
    with pytest.raises(error, match=message):
        FewShotRegressor(mf.MetaSGD(mf.MLP([3, 1])), steps=steps).fit(*regression_task)


@pytest.mark.parametrize("method", ["predict", "score"])
def test_regressor_before_fit(method, regressor_learner, regression_task):
    with pytest.raises(NotFittedError, match="This FewShotRegressor instance is not fitted yet"):
        getattr(FewShotRegressor(regressor_learner), method)(*regression_task[:1 if method == "predict" else 2])


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba", "decision_function"])
def test_classifier_before_fit(method, classifier_learner, classification_task):
    with pytest.raises(NotFittedError, match="This FewShotClassifier instance is not fitted yet"):
        getattr(FewShotClassifier(classifier_learner), method)(classification_task[0])


def test_width_other_than_the_networks(regressor_learner):
    with pytest.raises(ValueError, match=r"X has 4 features, but the learner's network takes 3 \(learner.model.input_width"):
        FewShotRegressor(regressor_learner).fit(np.zeros((5, 4)), np.zeros(5))
    model = FewShotRegressor(regressor_learner).fit(np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(ValueError, match="X has 4 features, but FewShotRegressor is expecting 3 features"):
        model.predict(np.zeros((5, 4)))


@pytest.mark.parametrize("y, message", [
    (np.zeros((5, 2)), "y has 2 columns, but the learner's network has 3 outputs"),
    (np.zeros(5), r"y is 1-D, but the learner's network has 3 outputs: give y of shape \(rows, 3\)"),
], ids=["columns", "1-D"])
def test_regressor_targets_must_match_the_outputs(y, message):
    with pytest.raises(ValueError, match=message):
        FewShotRegressor(mf.MetaSGD(mf.MLP([3, 3]))).fit(np.zeros((5, 3)), y)


@pytest.mark.parametrize("estimator_class, loss, message", [
    (FewShotRegressor, "softmax_ce", "FewShotRegressor needs a learner with loss 'mse', got learner.loss "
                                     "'softmax_ce': use FewShotClassifier"),
    (FewShotRegressor, "bce", "FewShotRegressor needs a learner with loss 'mse', got learner.loss 'bce'"),
    (FewShotClassifier, "mse", "FewShotClassifier needs a learner with loss 'softmax_ce' or 'bce', got "
                               "learner.loss 'mse': use FewShotRegressor"),
])
def test_loss_must_suit_the_estimator(estimator_class, loss, message):
    with pytest.raises(ValueError, match=message):
        estimator_class(mf.MetaSGD(mf.MLP([3, 2]), loss=loss)).fit(np.zeros((4, 3)), [0, 1, 0, 1])


@pytest.mark.parametrize("loss, outputs, y, message", [
    ("softmax_ce", 4, [0, 1, 2, 3, 4, 0],
     r"y has 5 classes, but the learner's network classifies at most 4 \(4 outputs\)"),
    ("softmax_ce", 4, [1] * 6, "y needs at least 2 classes to adapt to, got 1 class"),
    ("softmax_ce", 4, np.linspace(0, 1, 6), "Unknown label type"),
    ("bce", 1, [0, 1, 2, 0, 1, 2], "Only binary classification is supported. y has 3 classes, but the learner's "
                                   r"network classifies at most 2 \(one bce output\)"),
    ("bce", 2, [0, 1] * 3, "FewShotClassifier needs a bce learner with one output"),
], ids=["too-many", "one", "continuous", "bce-three", "bce-two-outputs"])
def test_classifier_class_counts(loss, outputs, y, message):
    with pytest.raises(ValueError, match=message):
        FewShotClassifier(mf.MetaSGD(mf.MLP([5, outputs]), loss=loss)).fit(np.zeros((6, 5)), y)


def test_docstring_examples_run():
    import doctest

    import metafast.sklearn

    failed, attempted = doctest.testmod(metafast.sklearn, optionflags=doctest.ELLIPSIS)
    assert attempted >= 3 and failed == 0


def test_a_failed_fit_leaves_the_estimator_as_it_was():
    learner = mf.MetaSGD(mf.MLP([2, 8, 3]), loss="softmax_ce", num_threads=1)
    X = np.eye(2)[[0, 1, 0]]
    model = FewShotClassifier(learner).fit(X, np.array(["a", "b", "a"]))
    before = {name: np.copy(value) for name, value in vars(model).items() if name.endswith("_")}
    predicted = model.predict(X)
    with pytest.raises(ValueError, match="X has 5 features, but the learner's network takes 2"):
        model.fit(np.ones((4, 5)), np.array(["x", "y", "z", "x"]))
    after = {name: value for name, value in vars(model).items() if name.endswith("_")}
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    np.testing.assert_array_equal(model.predict(X), predicted)  # still fitted to the first support set
