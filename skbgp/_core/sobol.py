"""Scrambled Sobol points that do not depend on torch's default dtype.

Shape glossary: ``n`` points, ``d`` dimensions.
"""

import torch
from torch.quasirandom import SobolEngine

__all__ = ["sobol_points"]


def sobol_points(n_points, dim, seed):
    """The first points of a scrambled Sobol sequence, the same whatever torch's defaults.

    :class:`torch.quasirandom.SobolEngine` computes its first point (its
    scrambling shift over ``2^MAXBIT``) in torch's *default* dtype, so under
    ``torch.set_default_dtype(torch.float16)`` that point would change;
    here it is always what it is under torch's default dtype, float32.

    Parameters
    ----------
    n_points, dim : int
    seed : int

    Returns
    -------
    Tensor of shape (n_points, dim)
        float64, on the CPU.
    """
    engine = SobolEngine(dim, scramble=True, seed=seed)
    U = engine.draw(n_points, dtype=torch.float64)
    U[0] = (engine.shift.to(torch.float32) / 2**engine.MAXBIT).to(torch.float64)
    return U
