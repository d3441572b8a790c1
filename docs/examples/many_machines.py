"""
Many machines (MPI)
===================

A Meta-SGD fit spread over the processes of an MPI run (shown, not run, on this page: run it with mpiexec).
"""

# mpiexec -n 4 python many_machines.py (or plain python: one process)
from mpi4py import MPI

import metafast as mf

learner = mf.MetaSGD(mf.MLP([1, 40, 40, 1], activation="relu"), seed=0)
learner.fit(mf.tasks.Sinusoid(), iterations=10_000, meta_batch=32, comm=MPI.COMM_WORLD,
            checkpoint="sine.npz", checkpoint_every=1000)   # the first process writes the files
if MPI.COMM_WORLD.Get_rank() == 0:
    learner.save("sine.npz")
    print(learner.evaluate(mf.tasks.Sinusoid(), steps=(0, 1)))
