"""Inside a worker: what it does to the process it runs tests in."""

from __future__ import annotations

import inspect
import sys
import types

import pytest

from gradci import worker


def test_frames_of_pseudo_files_get_their_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``<frozen runpy>``-like frame below the worker loop is named its module once, so torch's
    per-test ``inspect.stack()`` need not scan ``sys.modules`` for it every time."""
    monkeypatch.setattr(inspect, "modulesbyfile", dict(inspect.modulesbyfile))
    module = types.ModuleType("gradci_pseudo_main")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile("def below(f):\n    return f()\n", "<gradci pseudo>", "exec"), vars(module))
    # exec'd code in a namespace that is no module's stays unnamed: its globals prove nothing
    stray: dict[str, object] = {"__name__": module.__name__}
    exec(compile("def below(f):\n    return f()\n", "<gradci stray>", "exec"), stray)

    def probe() -> tuple[object, ...]:
        pseudo, stray_frame = sys._getframe(1), sys._getframe(3)  # (2: the lambda)
        before = inspect.getmodule(pseudo), inspect.getmodule(stray_frame)
        worker.map_stack_to_modules()
        context = next(f for f in inspect.stack() if f.filename == "<gradci pseudo>").code_context
        return *before, inspect.getmodule(pseudo), inspect.getmodule(stray_frame), context

    result = stray["below"](lambda: module.below(probe))  # type: ignore[operator]
    # before: unknown; after: its module, with no source lines made up for it
    assert result == (None, None, module, None, None)
