"""What a spec says, parsed: its operators, samples, tensors, skips and xfails (no torch import
here; tensors are made when a test asks for its samples)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Value domains of generated tensors, as (low, high, random sign). The margin around 0 keeps
# finite differences (gradcheck's eps is 1e-6) away from singularities and kinks there.
DOMAINS: Mapping[str, tuple[float | None, float | None, bool]] = {
    "any": (None, None, False),  # make_tensor's default: [-9, 9] for floating point
    "positive": (0.1, 9.0, False),
    "negative": (-9.0, -0.1, False),
    "nonzero": (0.1, 9.0, True),  # |x| in [0.1, 9], either sign
}
# Tensor dtypes a sample may give explicitly (an index tensor, say); checks run in DTYPE_NAMES.
TENSOR_DTYPES = (
    "float64",
    "complex128",
    "float32",
    "complex64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)
GRAD_DTYPES = frozenset({"float64", "complex128", "float32", "complex64", "float16", "bfloat16"})


@dataclass(frozen=True)
class TensorSpec:
    """A tensor a sample creates afresh each time: random by ``shape``, or literal ``values``."""

    shape: tuple[int, ...] | None = None
    values: Any = None  # nested lists of numbers
    requires_grad: bool | None = None  # None: True where the dtype can require grad
    low: float | None = None
    high: float | None = None
    random_sign: bool = False
    dtype: str | None = None  # None: the dtype under test
    noncontiguous: bool = False
    distribution: str = "uniform"  # or "normal": torch.randn's, clamped to [low, high] where given
    permute: tuple[int, ...] | None = None  # made in the inverse order, then permuted: non-contiguous

    def wants_grad(self, dtype: str) -> bool:
        own = self.dtype or dtype
        return own in GRAD_DTYPES and self.requires_grad is not False

    def make(self, device: Any, dtype: Any, requires_grad: bool) -> Any:
        import torch
        from torch.testing._internal.common_utils import noncontiguous_like

        own = getattr(torch, self.dtype) if self.dtype else dtype
        inverse = _inverse(self.permute) if self.permute else None
        if self.values is not None:
            tensor = torch.tensor(self.values, dtype=own, device=device)
            if inverse is not None:  # the declared values, in a permuted memory layout
                tensor = tensor.permute(inverse).contiguous()
        else:
            assert self.shape is not None
            shape = self.shape if inverse is None else tuple(self.shape[i] for i in inverse)
            tensor = self._random(shape, device, own)
        if self.permute is not None:
            tensor = tensor.permute(self.permute)
        if self.noncontiguous and tensor.numel() > 0:
            tensor = noncontiguous_like(tensor)
        grad = requires_grad and self.wants_grad(str(own).removeprefix("torch."))
        return tensor.detach().requires_grad_(grad)

    def _random(self, shape: tuple[int, ...], device: Any, dtype: Any) -> Any:
        import torch
        from torch.testing import make_tensor

        if self.distribution == "normal":
            tensor = torch.randn(shape, device=device, dtype=dtype)
            if self.low is not None and self.high is not None:
                if tensor.is_complex():  # each part, as make_tensor's range for complex
                    tensor = torch.complex(
                        tensor.real.clamp(self.low, self.high), tensor.imag.clamp(self.low, self.high)
                    )
                else:
                    tensor = tensor.clamp(self.low, self.high)
            return tensor
        tensor = make_tensor(shape, device=device, dtype=dtype, low=self.low, high=self.high)
        if self.random_sign:
            positive = make_tensor(shape, device=device, dtype=torch.bool)
            tensor = torch.where(positive, tensor, -tensor)
        return tensor


def _inverse(permutation: tuple[int, ...]) -> tuple[int, ...]:
    inverse = [0] * len(permutation)
    for position, dim in enumerate(permutation):
        inverse[dim] = position
    return tuple(inverse)


Value = Any  # a TensorSpec, a scalar (bool, int, float, str, None), or a tuple of values (a list)


def _make_value(value: Value, device: Any, dtype: Any, requires_grad: bool) -> Any:
    if isinstance(value, TensorSpec):
        return value.make(device, dtype, requires_grad)
    if isinstance(value, tuple):
        return [_make_value(v, device, dtype, requires_grad) for v in value]
    return value


def any_random(value: Value) -> bool:
    if isinstance(value, TensorSpec):
        return value.values is None
    if isinstance(value, tuple):
        return any(any_random(v) for v in value)
    return False


def any_grad(value: Value, dtype: str) -> bool:
    if isinstance(value, TensorSpec):
        return value.wants_grad(dtype)
    if isinstance(value, tuple):
        return any(any_grad(v, dtype) for v in value)
    return False


@dataclass(frozen=True)
class SampleSpec:
    input: Value
    args: tuple[Value, ...] = ()
    kwargs: tuple[tuple[str, Value], ...] = ()
    broadcasts_input: bool = False
    line: int = 0
    repeat: int = 1  # that many samples, each with a seed of its own

    def values(self) -> Iterator[Value]:
        yield self.input
        yield from self.args
        yield from (v for _, v in self.kwargs)


@dataclass(frozen=True)
class SpecSamples:
    """An OpInfo ``sample_inputs_func`` over the samples written in the spec (fresh tensors per call)."""

    samples: tuple[SampleSpec, ...]

    def __call__(self, op: Any, device: Any, dtype: Any, requires_grad: bool, **kwargs: Any) -> Iterator[Any]:
        import torch

        for index, sample in enumerate(self.samples):
            if sample.repeat == 1:
                yield _sample_input(sample, device, dtype, requires_grad)
                continue
            # Distinct seeds, as tests loop over seeds; the first is drawn from the test's own seeded
            # generator (different per test, as upstream's samples), and the repeats' draws happen in a
            # fork of it, so the samples after these are the same whatever the count.
            first = int(torch.randint(0, 2**31, ()))
            for k in range(sample.repeat):
                seed = first + k
                name = f"samples[{index}] repeat {k + 1} of {sample.repeat}, seed {seed}"
                with _seeded(seed, device):
                    made = _sample_input(sample, device, dtype, requires_grad, name)
                yield made  # outside the fork: the check itself draws from the test's generator


def _sample_input(
    sample: SampleSpec, device: Any, dtype: Any, requires_grad: bool, name: str | None = None
) -> Any:
    from torch.testing._internal.opinfo.core import SampleInput

    def make(value: Value) -> Any:
        return _make_value(value, device, dtype, requires_grad)

    return SampleInput(
        make(sample.input),
        args=tuple(make(a) for a in sample.args),
        kwargs={k: make(v) for k, v in sample.kwargs},
        broadcasts_input=sample.broadcasts_input,
        name=name,
    )


@contextlib.contextmanager
def _seeded(seed: int, device: Any) -> Iterator[None]:
    """Random draws on ``device`` (and the CPU) from ``seed``; the generators' states restored after."""
    import torch

    where = torch.device(device)
    if where.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    module = torch.get_device_module(where.type)
    index = where.index if where.index is not None else module.current_device()
    with torch.random.fork_rng(devices=[index], device_type=where.type):
        torch.default_generator.manual_seed(seed)
        with module.device(index):
            module.manual_seed(seed)
        yield


@dataclass(frozen=True)
class Expectation:
    """A ``skip`` or ``xfail`` of one check, with its reason, for some or all dtypes."""

    check: str
    reason: str
    dtypes: tuple[str, ...] | None
    line: int


@dataclass(frozen=True)
class OpSpec:
    index: int
    line: int
    name: str
    op: str  # import path
    variant: str = ""
    inplace: str | None = None
    dtypes: tuple[str, ...] = ("float64",)
    samples: tuple[SampleSpec, ...] | str = ()  # or the import path of a sample function
    supports_gradgrad: bool = True
    gradgrad_error: str | None = None  # a regex: double backward raises it (supports_gradgrad is False)
    supports_inplace_autograd: bool = True
    supports_forward_ad: bool = False  # OpInfo's defaults: forward-mode AD is opt-in
    supports_fwgrad_bwgrad: bool = False
    atol: float | None = None
    rtol: float | None = None
    nondet_tol: float = 0.0
    fast_mode: bool | None = None  # None: gradcheck's default (fast, unless the slow-gradcheck env)
    check_batched_grad: bool | None = None
    check_batched_gradgrad: bool | None = None
    check_batched_forward_grad: bool | None = None
    skips: tuple[Expectation, ...] = ()
    xfails: tuple[Expectation, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict)  # key -> line, for errors found later

    @property
    def key(self) -> str:
        return f"ops[{self.index}]"

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)

    @property
    def full_name(self) -> str:
        return f"{self.name}.{self.variant}" if self.variant else self.name


@dataclass(frozen=True)
class Spec:
    path: Path
    imports: tuple[tuple[str, int], ...]
    ops: tuple[OpSpec, ...]
