"""scikit-learn estimators over a meta-trained learner: ``fit`` adapts the meta-learned
initialisation to a few-shot support set, ``predict`` uses the adapted parameters, so a
meta-trained MetaSGD, MAML or Reptile runs inside pipelines, cross-validation and grid searches.

scikit-learn (>= 1.3) is needed for this module only: ``import metafast`` does not import it.

Examples
--------
>>> import numpy as np
>>> import metafast as mf
>>> from metafast.sklearn import FewShotRegressor
>>> learner = mf.MetaSGD(mf.MLP([1, 40, 1]), seed=0)
>>> _ = learner.fit(mf.tasks.Sinusoid(), iterations=50, progress=False)
>>> x = np.linspace(-5, 5, 10).reshape(-1, 1)
>>> model = FewShotRegressor(learner, steps=5).fit(x, 2 * np.sin(x[:, 0] + 1))
>>> model.predict(x).shape
(10,)
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as error:  # pragma: no cover - only without scikit-learn
    raise ImportError(
        "metafast.sklearn needs scikit-learn: pip install 'metafast[sklearn]' (or scikit-learn>=1.3)"
    ) from error

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - scikit-learn 1.3 to 1.5
    def _validate_data(estimator: Any, /, X: Any = "no_validation", y: Any = "no_validation", reset: bool = True,
                       **check_params: Any) -> Any:
        return estimator._validate_data(X, y, reset=reset, **check_params)

from . import _validation
from .mlp import MLP
from .supervised import SupervisedLearner

__all__ = ["FewShotRegressor", "FewShotClassifier"]


class _FewShotEstimator(BaseEstimator):
    """What both estimators share: the parameters, their checks, adaptation and the forward pass."""

    learner: Any
    steps: int | None
    _required_parameters = ["learner"]  # scikit-learn < 1.6: the checks cannot build one without it

    def __init__(self, learner: SupervisedLearner, steps: int | None = 1) -> None:
        self.learner = learner
        self.steps = steps

    # ------------------------------------------------------------------ checks
    def _checked_learner(self, losses: tuple[str, ...], other: str) -> SupervisedLearner:
        """The ``learner`` parameter, checked: a supervised metafast learner with one of ``losses``."""
        learner = self.learner
        if not isinstance(learner, SupervisedLearner):
            raise TypeError("learner must be a meta-trained metafast supervised learner (MetaSGD, MAML or Reptile), "
                            f"got {type(learner).__name__}")
        if learner.loss not in losses:
            wanted = " or ".join(repr(loss) for loss in losses)
            raise ValueError(f"{type(self).__name__} needs a learner with loss {wanted}, got learner.loss "
                             f"{learner.loss!r}: use {other}")
        return learner

    def _checked_steps(self) -> int | None:
        """The ``steps`` parameter, checked: a count of at least 0, or None."""
        return None if self.steps is None else _validation.count(self.steps, "steps", minimum=0)

    @staticmethod
    def _check_width(learner: SupervisedLearner, X: np.ndarray) -> None:
        inputs = learner.model.input_width
        if X.shape[1] != inputs:
            raise ValueError(f"X has {X.shape[1]} features, but the learner's network takes {inputs} "
                             f"(learner.model.input_width): a few-shot estimator adapts a fixed network")

    # --------------------------------------------------------------- the model
    def _outputs(self, X: Any) -> np.ndarray:
        """The adapted network's outputs for ``X``, shape (rows, outputs)."""
        check_is_fitted(self, "params_")
        X = _validate_data(self, X, dtype=self.learner.dtype, reset=False)
        return self.learner.predict(X, self.params_)

    def _logits(self, X: Any) -> np.ndarray:
        """The adapted network's outputs before its output activation (its logits)."""
        check_is_fitted(self, "params_")
        model = self.learner.model
        if model.output == "identity":
            return self._outputs(X)
        X = _validate_data(self, X, dtype=self.learner.dtype, reset=False)
        return MLP(model.sizes, model.activation, "identity", model.bias).forward(self.params_, X)

    def _fitted(self, learner: SupervisedLearner, X: np.ndarray, y: np.ndarray, steps: int | None,
                **attributes: Any) -> Any:
        """Adapts, then sets ``params_`` and the other fitted ``attributes``."""
        params = learner.adapt(X, y, steps)
        self.params_ = params
        for name, value in attributes.items():
            setattr(self, name, value)
        return self


@contextlib.contextmanager
def _kept_on_failure(estimator: BaseEstimator) -> Iterator[None]:
    """A fit that fails leaves the estimator as it was (scikit-learn's validation sets
    ``n_features_in_`` before the checks that may still refuse the data)."""
    state = dict(vars(estimator))
    try:
        yield
    except BaseException:
        vars(estimator).clear()
        vars(estimator).update(state)
        raise


class FewShotRegressor(RegressorMixin, _FewShotEstimator):
    """A meta-trained learner as a scikit-learn regressor: ``fit`` adapts, ``predict`` predicts.

    ``fit(X, y)`` treats ``(X, y)`` as the support set of one new task and adapts the
    learner's meta-learned initialisation to it, ``learner.adapt(X, y, steps)``;
    ``predict(X)`` is ``learner.predict(X, params_)``. The learner itself is never changed.

    Parameters
    ----------
    learner : MetaSGD, MAML or Reptile
        A meta-trained supervised learner with loss ``"mse"``. :func:`sklearn.base.clone`
        deep-copies it.
    steps : int or None, default 1
        Adaptation steps on the support set (0: the meta-learned initialisation itself);
        None: as many as the learner's inner loop of meta-training.

    Attributes
    ----------
    params_ : numpy.ndarray
        The adapted parameters, in the layout of ``learner.theta``.
    n_features_in_ : int
        Number of input features, ``learner.model.input_width``.
    feature_names_in_ : numpy.ndarray
        Names of the input features, when ``X`` had string column names.

    Notes
    -----
    ``y`` is 1-D when the network has one output, or 2-D with one column per output; ``X`` and
    ``y`` are converted to the learner's dtype, and predictions come in it. Scores are R²
    (``score``, from :class:`sklearn.base.RegressorMixin`).

    The network's input width is fixed, so every estimator check of scikit-learn that fits
    on data of another width fails, with ``ValueError: X has 3 features, but the learner's
    network takes 4 ...``. Each such check fits on one width (scikit-learn 1.9); the test
    suite runs every check on networks of 1, 2, 3, 4, 5 and 10 inputs, passes each at its
    width and lists the others in ``expected_failed_checks``:

    - 1 feature: check_fit2d_1feature;
    - 2: check_estimators_overwrite_params, check_estimators_fit_returns_self,
      check_readonly_memmap_input, check_fit_idempotent, check_fit_check_is_fitted,
      check_n_features_in;
    - 3: check_fit_score_takes_y, check_dont_overwrite_parameters, check_pipeline_consistency,
      check_estimators_nan_inf, check_estimators_pickle, check_f_contiguous_array_estimator,
      check_supervised_y_2d, check_methods_sample_order_invariance,
      check_methods_subset_invariance, check_dict_unchanged, check_fit2d_predict1d;
    - 4: check_n_features_in_after_fitting, check_positive_only_tag_during_fit,
      check_regressors_no_decision_function;
    - 5: check_estimators_dtypes;
    - 10: check_dtype_object, check_regressors_train, check_regressors_int,
      check_regressor_data_not_an_array, check_fit2d_1sample.

    Skipped by scikit-learn itself where their packages are missing: check_array_api_input
    (without ``SCIPY_ARRAY_API=1``) and the checks with pandas data.

    Examples
    --------
    >>> import numpy as np
    >>> import metafast as mf
    >>> from sklearn.model_selection import GridSearchCV
    >>> from metafast.sklearn import FewShotRegressor
    >>> learner = mf.MetaSGD(mf.MLP([1, 40, 1]), seed=0)
    >>> _ = learner.fit(mf.tasks.Sinusoid(), iterations=50, progress=False)
    >>> x = np.linspace(-5, 5, 10).reshape(-1, 1)
    >>> search = GridSearchCV(FewShotRegressor(learner), {"steps": [0, 1, 5]}, cv=5)
    >>> search.fit(x, 2 * np.sin(x[:, 0] + 1)).predict(x).shape
    (10,)
    """

    def fit(self, X: Any, y: Any) -> FewShotRegressor:
        """Adapts the learner to the support set ``(X, y)``.

        Parameters
        ----------
        X : array_like, shape (rows, inputs)
            Support inputs; ``inputs`` must be the network's input width.
        y : array_like, shape (rows,) or (rows, outputs)
            Support targets.

        Returns
        -------
        FewShotRegressor
            self, fitted.
        """
        with _kept_on_failure(self):
            return self._fit(X, y)

    def _fit(self, X: Any, y: Any) -> FewShotRegressor:
        learner = self._checked_learner(("mse",), "FewShotClassifier")
        steps = self._checked_steps()
        outputs = learner.model.output_width
        # One output: y is 1-D (a column vector is flattened, with scikit-learn's warning).
        X, y = _validate_data(self, X, y, dtype=learner.dtype, multi_output=outputs > 1, y_numeric=True)
        self._check_width(learner, X)
        if y.ndim == 1 and outputs != 1:
            raise ValueError(f"y is 1-D, but the learner's network has {outputs} outputs: give y of shape "
                             f"(rows, {outputs})")
        if y.ndim == 2 and y.shape[1] != outputs:
            raise ValueError(f"y has {y.shape[1]} columns, but the learner's network has {outputs} "
                             f"output{'s' if outputs != 1 else ''}")
        return self._fitted(learner, X, y.reshape(len(y), -1), steps, _one_d=y.ndim == 1)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions of the adapted network.

        Parameters
        ----------
        X : array_like, shape (rows, inputs)

        Returns
        -------
        numpy.ndarray, shape (rows,) or (rows, outputs)
            As ``y`` was given to ``fit``, in the learner's dtype.
        """
        outputs = self._outputs(X)
        return outputs[:, 0].copy() if self._one_d else outputs

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True  # a few steps from a meta-learned start, not a full fit
        tags.target_tags.multi_output = self._learner_outputs() > 1
        tags.target_tags.single_output = self._learner_outputs() == 1
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"poor_score": True, "multioutput": self._learner_outputs() > 1,
                "multioutput_only": self._learner_outputs() > 1}

    def _learner_outputs(self) -> int:
        return self.learner.model.output_width if isinstance(self.learner, SupervisedLearner) else 1


class FewShotClassifier(ClassifierMixin, _FewShotEstimator):
    """A meta-trained learner as a scikit-learn classifier: ``fit`` adapts, ``predict`` classifies.

    ``fit(X, y)`` treats ``(X, y)`` as the support set of one new task: its labels, whatever
    they are, become ``classes_`` (sorted) and are encoded 0..K-1, and the learner's
    meta-learned initialisation is adapted to it, ``learner.adapt(X, y_encoded, steps)``.
    The other methods use ``learner.predict(X, params_)``. The learner itself is never changed.

    Parameters
    ----------
    learner : MetaSGD, MAML or Reptile
        A meta-trained supervised learner: loss ``"softmax_ce"`` (classes up to the
        network's output width), or ``"bce"`` with one output (two classes).
        :func:`sklearn.base.clone` deep-copies it.
    steps : int or None, default 1
        Adaptation steps on the support set (0: the meta-learned initialisation itself);
        None: as many as the learner's inner loop of meta-training.

    Attributes
    ----------
    params_ : numpy.ndarray
        The adapted parameters, in the layout of ``learner.theta``.
    classes_ : numpy.ndarray
        The labels seen in ``fit``, sorted; class ``k`` is the network's output ``k``
        (softmax_ce), or the positive class is ``classes_[1]`` (bce).
    n_features_in_ : int
        Number of input features, ``learner.model.input_width``.
    feature_names_in_ : numpy.ndarray
        Names of the input features, when ``X`` had string column names.

    Notes
    -----
    With softmax_ce and fewer classes in ``y`` than the network has outputs, the outputs of
    the absent classes are ignored: probabilities are the softmax over the first
    ``len(classes_)`` logits. ``decision_function`` gives logits, one column per class; for
    two classes one column, positive for ``classes_[1]`` (with softmax_ce the difference of
    the two logits). Scores are accuracies (``score``, from
    :class:`sklearn.base.ClassifierMixin`).

    The network's input width is fixed, so every estimator check of scikit-learn that fits
    on data of another width fails, with ``ValueError: X has 3 features, but the learner's
    network takes 4 ...``. Each such check fits on one width (scikit-learn 1.9); the test
    suite runs every check on networks of 1, 2, 3, 4, 5 and 10 inputs, passes each at its
    width and lists the others in ``expected_failed_checks``:

    - 1 feature: check_fit2d_1feature;
    - 2: check_estimators_overwrite_params, check_estimators_fit_returns_self,
      check_readonly_memmap_input, check_fit_idempotent, check_fit_check_is_fitted,
      check_n_features_in,
      check_classifiers_classes, check_classifiers_train, check_decision_proba_consistency,
      check_classifier_data_not_an_array;
    - 3: check_fit_score_takes_y, check_dont_overwrite_parameters, check_pipeline_consistency,
      check_estimators_nan_inf, check_estimators_pickle, check_f_contiguous_array_estimator,
      check_supervised_y_2d, check_methods_sample_order_invariance,
      check_methods_subset_invariance, check_dict_unchanged, check_fit2d_predict1d;
    - 4: check_n_features_in_after_fitting, check_positive_only_tag_during_fit;
    - 5: check_estimators_dtypes;
    - 10: check_dtype_object.

    The checks of labels (one class, continuous targets, more classes than a bce learner
    takes) pass at every width: ``y`` is checked before ``X``'s width. A softmax_ce network
    needs at least 4 outputs for every check (check_dtype_object uses 4 classes); with a bce
    learner (binary only) the multi-class parts of the checks are not run, by the
    ``multi_class`` tag.

    Skipped by scikit-learn itself where their packages are missing: check_array_api_input
    (without ``SCIPY_ARRAY_API=1``) and the checks with pandas data.

    Examples
    --------
    >>> import metafast as mf
    >>> from metafast.sklearn import FewShotClassifier
    >>> family = mf.tasks.GaussianNWay(ways=3, dim=8, support=5)
    >>> learner = mf.MetaSGD(mf.MLP([8, 3]), loss="softmax_ce", alpha_init=0.5, seed=0)
    >>> _ = learner.fit(family, iterations=50, progress=False)
    >>> task = family.sample(1, seed=1)
    >>> model = FewShotClassifier(learner, steps=5).fit(task.x_support[0], ["a", "b", "c"] * 5)
    >>> model.classes_.tolist()
    ['a', 'b', 'c']
    """

    def fit(self, X: Any, y: Any) -> FewShotClassifier:
        """Adapts the learner to the support set ``(X, y)``.

        Parameters
        ----------
        X : array_like, shape (rows, inputs)
            Support inputs; ``inputs`` must be the network's input width.
        y : array_like, shape (rows,)
            Support labels, of any type scikit-learn takes for classes; at least 2 classes.

        Returns
        -------
        FewShotClassifier
            self, fitted.
        """
        with _kept_on_failure(self):
            return self._fit(X, y)

    def _fit(self, X: Any, y: Any) -> FewShotClassifier:
        learner = self._checked_learner(("softmax_ce", "bce"), "FewShotRegressor")
        steps = self._checked_steps()
        outputs = learner.model.output_width
        if learner.loss == "bce" and outputs != 1:
            raise ValueError(f"FewShotClassifier needs a bce learner with one output (two classes), got {outputs} "
                             "outputs: use loss 'softmax_ce' for several classes")
        X, y = _validate_data(self, X, y, dtype=learner.dtype)
        check_classification_targets(y)  # before the width check: a wrong y is named whatever X is
        classes, encoded = np.unique(y, return_inverse=True)
        most = 2 if learner.loss == "bce" else outputs
        if len(classes) < 2:
            raise ValueError(f"y needs at least 2 classes to adapt to, got {len(classes)} class")
        if len(classes) > most:
            raise ValueError(("Only binary classification is supported. " if most == 2 else "")
                             + f"y has {len(classes)} classes, but the learner's network classifies at most {most} "
                             f"({'one bce output' if learner.loss == 'bce' else f'{outputs} outputs'})")
        self._check_width(learner, X)
        targets = encoded.reshape(-1, 1).astype(learner.dtype) if learner.loss == "bce" else encoded.astype(np.int64)
        return self._fitted(learner, X, targets, steps, classes_=classes)

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits of the adapted network.

        Parameters
        ----------
        X : array_like, shape (rows, inputs)

        Returns
        -------
        numpy.ndarray, shape (rows,) or (rows, classes)
            One column per class; for two classes the logit of ``classes_[1]`` (against
            ``classes_[0]``), 1-D.
        """
        logits = self._logits(X)
        if self.learner.loss == "bce":
            return logits[:, 0].copy()
        logits = logits[:, :len(self.classes_)]
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of the adapted network.

        Parameters
        ----------
        X : array_like, shape (rows, inputs)

        Returns
        -------
        numpy.ndarray, shape (rows, classes)
            Columns in the order of ``classes_``; rows sum to 1.
        """
        logits = self._logits(X).astype(np.float64)
        if self.learner.loss == "bce":
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        logits = logits[:, :len(self.classes_)]
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        return weights / weights.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithms of :meth:`predict_proba`, computed from the logits without underflow."""
        logits = self._logits(X).astype(np.float64)
        if self.learner.loss == "bce":
            z = logits[:, :1]
            return -np.logaddexp(0.0, np.hstack([z, -z]))  # log(1 - p), log(p)
        logits = logits[:, :len(self.classes_)]
        shifted = logits - logits.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable classes under the adapted network.

        Parameters
        ----------
        X : array_like, shape (rows, inputs)

        Returns
        -------
        numpy.ndarray, shape (rows,)
            Labels from ``classes_``.
        """
        logits = self._logits(X)
        if self.learner.loss == "bce":
            return self.classes_[(logits[:, 0] > 0).astype(np.intp)]
        return self.classes_[np.argmax(logits[:, :len(self.classes_)], axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True  # a few steps from a meta-learned start, not a full fit
        tags.classifier_tags.multi_class = self._multi_class()
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"poor_score": True, "binary_only": not self._multi_class()}

    def _multi_class(self) -> bool:
        learner = self.learner
        return not isinstance(learner, SupervisedLearner) or (learner.loss == "softmax_ce"
                                                              and learner.model.output_width > 2)
