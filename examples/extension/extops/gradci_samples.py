"""Sample inputs written in Python, for ops whose samples are easier to say in code than in YAML.

gradci calls such a function as OpInfo does: ``(op, device, dtype, requires_grad, **kwargs)``, and it
yields ``SampleInput`` s. ``gradci-ops.yml`` names it: ``samples: extops.gradci_samples:scaled_mul``.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from torch.testing import make_tensor
from torch.testing._internal.opinfo.core import SampleInput


def scaled_mul(
    op: Any, device: torch.device | str, dtype: torch.dtype, requires_grad: bool, **kwargs: Any
) -> Iterator[SampleInput]:
    make = partial(make_tensor, device=device, dtype=dtype, requires_grad=requires_grad)
    for shape in ((5,), (2, 3), ()):
        yield SampleInput(make(shape), args=(make(shape),), kwargs={"alpha": 2.5})
    # Only x requires grad.
    yield SampleInput(make((4,)), args=(make((4,), requires_grad=False),), kwargs={"alpha": -0.5})
