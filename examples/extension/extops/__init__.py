"""extops: a small PyTorch extension, the example gradci checks (see ../gradci-ops.yml).

Importing the package registers the ``torch.library`` operators ``torch.ops.extops.*``.

* ``fused_gelu``: a ``torch.library.custom_op`` with ``register_autograd`` (double backward works).
  ``fused_gelu_broken_fake`` is its twin whose fake (meta) kernel returns the wrong shape: only
  opcheck sees it (``gradci run --checks +opcheck``).
* ``softsign``: a custom op whose backward kernel has no derivative of its own, so double backward
  raises "the derivative for ... is not implemented" (``supports_gradgrad: false`` in the spec).
* ``scaled_mul``: a ``torch.autograd.Function``; ``scaled_mul_broken`` is its twin whose backward
  forgets the factor ``alpha`` for the second input. ``EXTOPS_BREAK=scaled_mul`` in the environment
  gives ``scaled_mul`` that same wrong backward (to show gradci a change that breaks an op).
* ``scale_shift`` and its in-place variant ``scale_shift_``: ``torch.autograd.Function`` s.
* ``cube``: a ``torch.autograd.Function`` with a forward-mode formula (``jvp``) beside its backward;
  ``cube_broken_jvp`` is its twin whose ``jvp`` forgets a factor 3 (``gradci run --checks all``).
"""

from __future__ import annotations

from .functions import cube, cube_broken_jvp, scale_shift, scale_shift_, scaled_mul, scaled_mul_broken
from .library import fused_gelu, fused_gelu_broken_fake, softsign, softsign_backward

__all__ = [
    "cube",
    "cube_broken_jvp",
    "fused_gelu",
    "fused_gelu_broken_fake",
    "scale_shift",
    "scale_shift_",
    "scaled_mul",
    "scaled_mul_broken",
    "softsign",
    "softsign_backward",
]
