"""ConvNet configurations the reference's and the core's tests share: a combined
parametrization in which every stride, padding, pool, batch-norm setting, activation, head, bias
setting and loss appears, with odd input sizes, without the full product."""

from __future__ import annotations

CASES = {
    "s2-same-relu-bn-average-mse": dict(input_shape=(1, 7, 7), stride=2, padding="same", activation="relu",
                                        loss="mse"),
    "s1-same-max-tanh-bnscale-flatten-softmax": dict(input_shape=(2, 6, 5), stride=1, padding="same", pool="max",
                                                     activation="tanh", batch_norm_scale=True, head="flatten",
                                                     loss="softmax_ce"),
    "s1-valid-sigmoid-nobn-flatten-nobias-bce": dict(input_shape=(1, 7, 7), stride=1, padding="valid",
                                                     activation="sigmoid", batch_norm=False, head="flatten",
                                                     bias=False, loss="bce"),
    "s2-valid-identity-bnscale-average-softmax": dict(input_shape=(2, 7, 7), stride=2, padding="valid",
                                                      activation="identity", batch_norm_scale=True,
                                                      loss="softmax_ce"),
    "s1-same-max-relu-nobn-average-nobias-bce": dict(input_shape=(1, 7, 7), stride=1, padding="same", pool="max",
                                                     activation="relu", batch_norm=False, bias=False, loss="bce"),
    "s2-same-max-sigmoid-bn-flatten-mse": dict(input_shape=(1, 13, 13), stride=2, padding="same", pool="max",
                                               activation="sigmoid", head="flatten", loss="mse"),
    "s1-valid-max-tanh-bn-average-nobias-mse": dict(input_shape=(2, 12, 11), stride=1, padding="valid", pool="max",
                                                    activation="tanh", bias=False, loss="mse"),
    "s2-same-identity-nobn-flatten-softmax-k4": dict(input_shape=(1, 5, 7), stride=2, padding="same",
                                                     kernel_size=4, activation="identity", batch_norm=False,
                                                     head="flatten", loss="softmax_ce"),
}
