"""Run a composite action (action.yml) the way GitHub's runner does, for tests, on this machine.

Each ``run:`` step is written to a file and run with ``bash --noprofile --norc -eo pipefail`` in
its ``working-directory``, with the step's ``env:``, ``GITHUB_ACTION_PATH``, ``RUNNER_TEMP`` and a
fresh ``GITHUB_OUTPUT`` whose values become ``steps.<id>.outputs``. ``if:`` decides with the
status functions. A ``uses:`` step (another action: it cannot run here) is recorded with its
evaluated ``with:`` for the test to check.

Expressions support what an action needs and no more, so that action.yml stays within what is
tested: contexts ``inputs``, ``steps``, ``github`` and ``runner``; string literals; ``==``, ``!=``,
``!``, ``&&``, ``||``, parentheses; ``success()``, ``failure()``, ``cancelled()``, ``always()``.
Anything else raises ``ExpressionError``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ExpressionError(ValueError):
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\))|(?P<call>[a-z]+\(\))"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ExpressionError(f"cannot parse {text[pos:]!r} in {text!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str, contexts: dict[str, Any], status: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.contexts = contexts
        self.status = status
        self.text = text

    def parse(self) -> Any:
        value = self.or_()
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.pos][1]!r} in {self.text!r}")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            value = value if _truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.compare()
        while self.peek() == "&&":
            self.take()
            right = self.compare()
            value = right if _truthy(value) else value
        return value

    def compare(self) -> Any:
        value = self.unary()
        while self.peek() in ("==", "!="):
            op = self.take()[1]
            right = self.unary()
            # GitHub compares strings case-insensitively
            equal = str(value).lower() == str(right).lower()
            value = equal if op == "==" else not equal
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not _truthy(self.unary())
        if self.peek() == "(":
            self.take()
            value = self.or_()
            if self.peek() != ")":
                raise ExpressionError(f"missing ) in {self.text!r}")
            self.take()
            return value
        if self.pos >= len(self.tokens):
            raise ExpressionError(f"unexpected end of {self.text!r}")
        kind, text = self.take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "call":
            functions = {
                "success()": self.status == "success",
                "failure()": self.status == "failure",
                "cancelled()": False,
                "always()": True,
            }
            if text not in functions:
                raise ExpressionError(f"function {text} is not supported")
            return functions[text]
        if kind == "name":
            return self.lookup(text)
        raise ExpressionError(f"unexpected {text!r} in {self.text!r}")

    def lookup(self, dotted: str) -> Any:
        head, *rest = dotted.split(".")
        if head not in self.contexts:
            raise ExpressionError(f"unknown context {head!r} in {self.text!r}")
        value: Any = self.contexts[head]
        for part in rest:
            if not isinstance(value, dict):
                return ""
            if head == "inputs" and part not in value:
                raise ExpressionError(f"no input {part!r} in {self.text!r}")
            value = value.get(part, "")
        return value


def _truthy(value: Any) -> bool:
    # GitHub's falsy values: false, 0, -0, '', null. The string 'false' (an input) is truthy there.
    return not (value is None or value is False or value == "" or (type(value) is int and value == 0))


def evaluate(text: str, contexts: dict[str, Any], status: str = "success") -> Any:
    return _Parser(text, contexts, status).parse()


_EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def interpolate(value: Any, contexts: dict[str, Any], status: str = "success") -> str:
    text = "" if value is None else str(value)

    def one(match: re.Match[str]) -> str:
        result = evaluate(match.group(1), contexts, status)
        if isinstance(result, bool):
            return "true" if result else "false"
        return "" if result is None else str(result)

    return _EMBEDDED.sub(one, text)


def condition(value: Any, contexts: dict[str, Any], status: str) -> bool:
    if value is None:
        return status == "success"
    text = str(value).strip()
    inner = _EMBEDDED.fullmatch(text)
    expression = inner.group(1) if inner else text
    uses_status = re.search(r"\b(success|failure|cancelled|always)\(\)", expression) is not None
    result = _truthy(evaluate(expression, contexts, status))
    return result if uses_status else (status == "success" and result)


def read_outputs(path: Path) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` as the runner reads it: ``name=value`` and ``name<<DELIMITER`` blocks."""
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").split("\n")
    values: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        i += 1
    return values


@dataclass
class StepRun:
    name: str
    id: str | None
    ran: bool
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    uses: str | None = None
    with_: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    env: dict[str, str] = field(default_factory=dict)  # the step process's whole environment


@dataclass
class ActionRun:
    status: str
    steps: list[StepRun]
    outputs: dict[str, str]

    @property
    def log(self) -> str:
        return "\n".join(
            f"## {s.name} ({s.seconds:.1f} s)\n{s.stdout}{s.stderr}" for s in self.steps if s.ran
        )

    def step(self, name: str) -> StepRun:
        [found] = [s for s in self.steps if s.name == name]
        return found


def run_action(
    action_dir: Path,
    inputs: dict[str, str],
    *,
    workspace: Path,
    env: dict[str, str],
    runner_temp: Path,
    github: dict[str, str] | None = None,
    timeout: float = 900,
) -> ActionRun:
    spec = yaml.safe_load((action_dir / "action.yml").read_text(encoding="utf-8"))
    assert spec["runs"]["using"] == "composite"
    declared = spec.get("inputs") or {}
    unknown = set(inputs) - set(declared)
    if unknown:
        raise ValueError(f"unexpected inputs {sorted(unknown)} (GitHub warns and ignores them)")
    github_ctx = {"action_path": str(action_dir), "workspace": str(workspace), "token": "", **(github or {})}
    contexts: dict[str, Any] = {"github": github_ctx, "runner": {"temp": str(runner_temp)}, "steps": {}}
    contexts["inputs"] = {
        name: inputs[name] if name in inputs else interpolate(meta.get("default", ""), contexts)
        for name, meta in declared.items()
    }
    status = "success"
    runs: list[StepRun] = []
    for index, step in enumerate(spec["runs"]["steps"]):
        name = step.get("name") or f"step {index}"
        record = StepRun(name, step.get("id"), ran=False)
        runs.append(record)
        if not condition(step.get("if"), contexts, status):
            continue
        record.ran = True
        if "uses" in step:
            record.uses = step["uses"]
            record.with_ = {k: interpolate(v, contexts, status) for k, v in (step.get("with") or {}).items()}
            continue
        output = runner_temp / f"output-{index}"
        output.write_text("")
        script = runner_temp / f"step-{index}.sh"
        script.write_text(step["run"])
        step_env = {
            **env,
            **{k: interpolate(v, contexts, status) for k, v in (step.get("env") or {}).items()},
            "GITHUB_ACTION_PATH": str(action_dir),
            "GITHUB_OUTPUT": str(output),
            "RUNNER_TEMP": str(runner_temp),
            "GITHUB_WORKSPACE": str(workspace),
        }
        cwd = workspace / interpolate(step.get("working-directory", "."), contexts, status)
        assert step.get("shell") == "bash", f"{name}: only shell: bash is run here"
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        record.env = step_env
        record.returncode, record.stdout, record.stderr = done.returncode, done.stdout, done.stderr
        record.seconds = time.monotonic() - started
        record.outputs = read_outputs(output)
        if record.id:
            contexts["steps"][record.id] = {"outputs": record.outputs}
        if done.returncode != 0:
            status = "failure"
    outputs = {
        name: interpolate(meta.get("value", ""), contexts, status)
        for name, meta in (spec.get("outputs") or {}).items()
    }
    return ActionRun(status, runs, outputs)


def os_environ_without_github() -> dict[str, str]:
    """This process's environment less what a runner would set itself."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "GRADCI_", "RUNNER_", "INPUT_")) and k not in ("GH_TOKEN", "CI")
    }
