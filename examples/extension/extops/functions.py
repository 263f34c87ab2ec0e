"""Operators written as ``torch.autograd.Function`` s, called as plain Python functions."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor


def _broken(name: str) -> bool:
    """``EXTOPS_BREAK=scaled_mul`` turns on the twin's wrong backward in ``scaled_mul`` itself."""
    return name in os.environ.get("EXTOPS_BREAK", "").replace(",", " ").split()


class _ScaledMul(torch.autograd.Function):
    """alpha * x * y (tensors of one shape), for real and complex x, y and a real alpha."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, alpha: float, broken: bool) -> Tensor:
        ctx.save_for_backward(x, y)
        ctx.alpha, ctx.broken = alpha, broken
        return alpha * x * y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, y = ctx.saved_tensors
        grad_x = grad * (ctx.alpha * y).conj() if ctx.needs_input_grad[0] else None
        grad_y = None
        if ctx.needs_input_grad[1]:
            # The twin forgets alpha for y: right for alpha == 1, wrong for every other alpha.
            grad_y = grad * x.conj() if ctx.broken else grad * (ctx.alpha * x).conj()
        return grad_x, grad_y, None, None


def scaled_mul(x: Tensor, y: Tensor, alpha: float = 1.0) -> Tensor:
    return _ScaledMul.apply(x, y, alpha, _broken("scaled_mul"))


def scaled_mul_broken(x: Tensor, y: Tensor, alpha: float = 1.0) -> Tensor:
    """``scaled_mul`` with a subtly wrong backward: the gradient for ``y`` misses the factor alpha."""
    return _ScaledMul.apply(x, y, alpha, True)


class _ScaleShift(torch.autograd.Function):
    """x * scale + shift, shift broadcast to x."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, shift: Tensor, scale: float) -> Tensor:
        ctx.scale, ctx.shift_shape = scale, shift.shape
        return x * scale + shift

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        return grad * ctx.scale, grad.sum_to_size(ctx.shift_shape), None


class _ScaleShiftInplace(torch.autograd.Function):
    """x.mul_(scale).add_(shift): x is modified and returned."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, shift: Tensor, scale: float) -> Tensor:
        ctx.scale, ctx.shift_shape = scale, shift.shape
        x.mul_(scale).add_(shift)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        return grad * ctx.scale, grad.sum_to_size(ctx.shift_shape), None


def scale_shift(x: Tensor, shift: Tensor, *, scale: float = 1.0) -> Tensor:
    return _ScaleShift.apply(x, shift, scale)


def scale_shift_(x: Tensor, shift: Tensor, *, scale: float = 1.0) -> Tensor:
    """In-place ``scale_shift``: ``x`` must have the broadcast shape."""
    return _ScaleShiftInplace.apply(x, shift, scale)


class _Cube(torch.autograd.Function):
    """x ** 3, with a backward formula (vjp) and a forward-mode one (jvp): d(x^3) = 3 x^2 dx."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, broken: bool) -> Tensor:
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.broken = broken
        return x**3

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * (3 * x**2).conj(), None

    @staticmethod
    def jvp(ctx: Any, x_t: Tensor, _: None) -> Tensor:
        (x,) = ctx.saved_tensors
        # The twin's tangent forgets the factor 3: right nowhere but where x is 0.
        return (1 if ctx.broken else 3) * x**2 * x_t


def cube(x: Tensor) -> Tensor:
    return _Cube.apply(x, False)


def cube_broken_jvp(x: Tensor) -> Tensor:
    """``cube`` whose forward-mode formula forgets the factor 3 (its backward is right)."""
    return _Cube.apply(x, True)
