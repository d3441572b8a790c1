"""
Reptile on sine waves
=====================

Reptile with an Adam inner loop on the sine tasks of the Reptile paper's demonstration.
"""

import metafast as mf

tasks = mf.tasks.Sinusoid.book()
rep = mf.Reptile(mf.MLP([1, 64, 1], activation="tanh"), loss="mse", inner_optimizer="adam",
                 inner_lr=1e-2, inner_epochs=10, inner_batch=10, epsilon=0.1, epsilon_final=None,
                 adam_betas=(0.9, 0.999), reset_optimizer=True, shuffle=False, dtype="float32", seed=0)
batch = tasks.sample(5, seed=1)
loss = rep.meta_step(batch)       # T = 5 tasks: batched Reptile, θ += ε · mean(θ̃_i − θ); T = 1: serial
history = rep.fit(tasks, iterations=30_000, meta_batch=1)   # serial Reptile, as in the book
task = tasks.sample(1, seed=7)
params = rep.adapt(task.x_support[0], task.y_support[0])    # steps=None: the whole inner loop of training
print(rep.evaluate(tasks, num_tasks=600, steps=(0, 1, 10, 50), seed=123))
