"""
The network core
================

A forward pass, the loss and its gradient, and an exact Hessian-vector product of an MLP, without a learner.
"""

import numpy as np
import metafast as mf

model = mf.MLP([1, 40, 40, 1], activation="relu", output="identity", bias=True)
theta = model.init(seed=0, dtype="float64")          # shape (model.num_params,)

x = np.linspace(-5, 5, 10).reshape(-1, 1)
y = 2.0 * np.sin(x)
yhat = model.forward(theta, x)                       # (10, 1)
loss, grad = model.loss_and_grad(theta, x, y, loss="mse")
hv = model.hvp(theta, x, y, grad, loss="mse")        # exact H @ grad
layers = model.unflatten(theta)                      # [(W1, b1), (W2, b2), (W3, b3)], views
