"""Learners in other processes: a child forked after a threaded fit trains (on one thread, with
the results of any thread count) instead of waiting forever on the parent's OpenMP pool, and
multiprocessing's fork and spawn pools, concurrent.futures and joblib's loky run learners.

Each scenario runs in a subprocess with a timeout, so a regression fails instead of hanging the
suite; METAFAST_TEAMS=exact gives the parent's fit its team of 2 threads whatever the load, so
the pool a fork breaks exists on an idle machine too."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# What every scenario shares: a learner trained on 2 threads, and the same training on 1 thread
# (results do not depend on the threads, so that is what any process must reproduce).
COMMON = """
import os, sys
import numpy as np
import metafast as mf

def trained(num_threads, seed=0, iterations=60):
    learner = mf.MetaSGD(mf.MLP([1, 32, 32, 1]), seed=seed, num_threads=num_threads)
    learner.fit(mf.tasks.Sinusoid(support=5, query=5), iterations=iterations, meta_batch=8, progress=False)
    return learner

def result(learner):
    return learner.history.tobytes() + learner.theta.tobytes() + learner.alpha.tobytes()

def work(seed):
    # runs in a worker: trains two chunks (a team each time it may use one) from scratch
    learner = trained(2, seed=seed, iterations=30)
    learner.fit(mf.tasks.Sinusoid(support=5, query=5), iterations=30, meta_batch=8, progress=False)
    return result(learner)

def serial(seed):
    return result(trained(1, seed=seed))

def go_on(learner, tasks):
    # runs in a worker: a learner and a family that came by pickle train on, as at home
    learner.fit(tasks, iterations=20, meta_batch=8, progress=False)
    return result(learner)

def data_family():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (200, 1))
    ids = np.arange(200) % 10
    return mf.tasks.Regression(x, np.sin(x + ids[:, None]), ids, support=5, query=5)

def sent():
    # learners mid-training, with the families they train on, to send to workers
    learner, other = trained(2), trained(2, seed=1, iterations=10)
    other.fit(data_family(), iterations=10, meta_batch=8, progress=False)
    return [learner, other], [learner.tasks, other.tasks]

def at_home(learners, families):
    import copy
    return [go_on(copy.deepcopy(learner), tasks) for learner, tasks in zip(learners, families)]
"""


def run_scenario(code: str, tmp_path, timeout: float = 60) -> str:
    """Runs COMMON + code as a script (spawned workers import it) and returns its output."""
    script = tmp_path / "scenario.py"
    script.write_text(COMMON + textwrap.dedent(code))
    env = dict(os.environ, METAFAST_TEAMS="exact", OMP_NUM_THREADS="2")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_a_child_forked_after_a_threaded_fit_trains_like_a_serial_run(tmp_path):
    out = run_scenario("""
        import time

        def more(learner):
            learner.fit(mf.tasks.Sinusoid(support=5, query=5), iterations=20, meta_batch=8, progress=False)
            return learner

        parent = trained(2)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: more training from the parent's state, then a learner from scratch
            os.close(read)
            same = result(more(parent)) == result(more(trained(1))) and work(5) == serial(5)
            os.write(write, b"ok" if same else b"differs")
            os._exit(0)
        os.close(write)
        deadline = time.monotonic() + 30
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                sys.exit("the forked child hangs")
            time.sleep(0.01)
        print(os.read(read, 100).decode())
        print(result(more(parent)) == result(more(trained(1))))  # the parent goes on, with its threads
    """, tmp_path)
    assert out.split() == ["ok", "True"]


def test_a_fork_pool_after_a_fit(tmp_path):
    out = run_scenario("""
        import multiprocessing
        trained(2)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(work, [1, 2, 3])
        print(results == [serial(seed) for seed in [1, 2, 3]])
    """, tmp_path)
    assert out.split() == ["True"]


def test_a_spawn_process_pool_executor(tmp_path):
    out = run_scenario("""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        if __name__ == "__main__":
            trained(2)
            with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(work, [1, 2]))
            print(results == [serial(seed) for seed in [1, 2]])
    """, tmp_path)
    assert out.split() == ["True"]


def test_joblib_loky_after_a_fit(tmp_path):
    pytest.importorskip("joblib")
    out = run_scenario("""
        from joblib import Parallel, delayed
        if __name__ == "__main__":
            trained(2)
            results = Parallel(n_jobs=2)(delayed(work)(seed) for seed in [1, 2])
            print(results == [serial(seed) for seed in [1, 2]])
    """, tmp_path)
    assert out.split() == ["True"]


SENDERS = {
    "fork-pool": """
        import multiprocessing
        learners, families = sent()
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.starmap(go_on, zip(learners, families))
        print(results == at_home(learners, families))
    """,
    "spawn-executor": """
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        if __name__ == "__main__":
            learners, families = sent()
            with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(go_on, learners, families))
            print(results == at_home(learners, families))
    """,
    "joblib-loky": """
        from joblib import Parallel, delayed
        if __name__ == "__main__":
            learners, families = sent()
            results = Parallel(n_jobs=2)(delayed(go_on)(l, f) for l, f in zip(learners, families))
            print(results == at_home(learners, families))
    """,
}


@pytest.mark.parametrize("how", list(SENDERS))
def test_learners_and_families_sent_to_workers_train_on_bit_for_bit(how, tmp_path):
    if how == "joblib-loky":
        pytest.importorskip("joblib")
    assert run_scenario(SENDERS[how], tmp_path).split() == ["True"]
