"""Operators registered with ``torch.library``: they live under ``torch.ops.extops``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@torch.library.custom_op("extops::fused_gelu", mutates_args=())
def fused_gelu(x: Tensor) -> Tensor:
    """GELU, x * Phi(x), in one kernel (here: torch ops standing in for a fused CUDA kernel)."""
    return x * 0.5 * (1.0 + torch.erf(x * _SQRT_HALF))


@fused_gelu.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x)


def _gelu_setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
    (x,) = inputs
    ctx.save_for_backward(x)


def _gelu_backward(ctx: Any, grad: Tensor) -> Tensor:
    (x,) = ctx.saved_tensors
    # d/dx x*Phi(x) = Phi(x) + x*phi(x). Written with differentiable torch ops, so double backward works.
    cdf = 0.5 * (1.0 + torch.erf(x * _SQRT_HALF))
    pdf = torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return grad * (cdf + x * pdf)


fused_gelu.register_autograd(_gelu_backward, setup_context=_gelu_setup_context)


@torch.library.custom_op("extops::fused_gelu_broken_fake", mutates_args=())
def fused_gelu_broken_fake(x: Tensor) -> Tensor:
    """``fused_gelu``'s twin whose fake (meta) kernel is wrong: its real kernel and autograd are right."""
    return x * 0.5 * (1.0 + torch.erf(x * _SQRT_HALF))


@fused_gelu_broken_fake.register_fake
def _(x: Tensor) -> Tensor:
    # Wrong: the output is flat, where the real kernel keeps x's shape. Eager code never runs the
    # fake kernel, so gradcheck cannot see this; torch.compile and export trace with it.
    return x.new_empty(x.numel())


fused_gelu_broken_fake.register_autograd(_gelu_backward, setup_context=_gelu_setup_context)


@torch.library.custom_op("extops::softsign_backward", mutates_args=())
def softsign_backward(grad: Tensor, x: Tensor) -> Tensor:
    """The backward kernel of softsign: grad / (1 + |x|)^2."""
    return grad / (1.0 + x.abs()) ** 2


@softsign_backward.register_fake
def _(grad: Tensor, x: Tensor) -> Tensor:
    return torch.empty_like(grad)


def _no_double_backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
    # The backward kernel has no derivative of its own. Say so as torch's kernels without a
    # double-backward formula do (derivatives.yaml's not_implemented), which is what the upstream
    # check test_fn_fail_gradgrad expects of an op with supports_gradgrad=False.
    raise RuntimeError("the derivative for 'extops::softsign_backward' is not implemented.")


softsign_backward.register_autograd(_no_double_backward, setup_context=lambda ctx, inputs, output: None)


@torch.library.custom_op("extops::softsign", mutates_args=())
def softsign(x: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return x / (1.0 + x.abs())


@softsign.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x)


def _softsign_setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
    (x,) = inputs
    ctx.save_for_backward(x)


def _softsign_backward(ctx: Any, grad: Tensor) -> Tensor:
    (x,) = ctx.saved_tensors
    return softsign_backward(grad, x)


softsign.register_autograd(_softsign_backward, setup_context=_softsign_setup_context)
