"""A fit, a prediction and an unpickled model leave torch as they found it.

Run in a fresh interpreter, with two intra-op threads from the environment
(as a user's process has them), because the failure this guards against is
process-wide and permanent: after ``torch.set_num_threads`` has been called,
torch's batched LU (``torch.linalg.solve``, ``inv``) fails in some builds
(pytorch/pytorch#141358). skbgp runs its single-threaded arithmetic on
threads of its own through thread-local settings instead.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import pickle, warnings
    import numpy as np
    import torch

    def state():
        return dict(
            threads=torch.get_num_threads(),
            interop=torch.get_num_interop_threads(),
            dtype=str(torch.get_default_dtype()),
            grad=torch.is_grad_enabled(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            rng=torch.random.get_rng_state().numpy().tobytes(),
            np_rng=str(np.random.get_state()[1][:5]),
        )

    def batched_lu_works():
        g = torch.Generator().manual_seed(0)
        A = torch.randn(4, 200, 200, dtype=torch.float64, generator=g)
        A = A + 200.0 * torch.eye(200, dtype=torch.float64)
        b = torch.randn(4, 200, 3, dtype=torch.float64, generator=g)
        x = torch.linalg.solve(A, b)
        inv = torch.linalg.inv(A)
        eye = torch.eye(200, dtype=torch.float64)
        assert float((A @ x - b).abs().max()) < 1e-10
        assert float((inv @ A - eye).abs().max()) < 1e-10

    before = state()
    assert before["threads"] == 2, before["threads"]
    from skbgp import BatchedGaussianProcessRegressor, batched_cross_validate
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(60, 2))
    y = np.column_stack([np.sin(4 * X[:, 0]), X[:, 1] ** 2]) + 0.05 * rng.randn(60, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpr = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
        assert state() == before, "fit"
        batched_lu_works()
        gpr.predict(X[:5], return_std=True)
        gpr.sample_y(X[:5], n_samples=3)
        assert state() == before, "predict"
        batched_lu_works()
        again = pickle.loads(pickle.dumps(gpr))
        again.predict(X[:5], return_cov=True)
        assert state() == before, "unpickle"
        batched_lu_works()
        batched_cross_validate(BatchedGaussianProcessRegressor(random_state=0), X, y, cv=3)
        assert state() == before, "cross-validation"
        batched_lu_works()
    print("ok")
    """
)


def test_fit_predict_and_unpickle_leave_torch_state_and_batched_lu_intact():
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env=env, timeout=120)  # the broken state can hang in LAPACK
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
    assert "DLASWP" not in result.stderr  # MKL's message of the broken state
