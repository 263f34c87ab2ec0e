"""Options, resolved in one place: defaults < config file < GRADCI_* environment < command-line flags.

``Settings`` is the one table of options: each field gives, besides its type and default, its
parser (which checks the value), choices, --help text and metavar, and the commands that take it as
a flag (``setting(...)``). From it come the flags and their --help (cli.py), the config-file keys
and their validation, the ``GRADCI_*`` names, ``gradci config``, and the check that action.yml
has an input for each (tests/test_workflows.py). One name everywhere: ``--op-modules`` on the
command line, ``op-modules`` in ``[tool.gradci]`` of pyproject.toml or in ``.gradci.yml``,
``GRADCI_OP_MODULES`` in the environment. Errors name the source of the bad value, and
``Resolved`` says where each value came from.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from .checks import BACKWARD, CHECK_NAMES, DEFAULT_CHECKS, DTYPE_NAMES, GROUPS, UPSTREAM_DBS
from .errors import ConfigError, SpecError
from .plan import Shard, parse_checks, parse_dtypes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILES = (".gradci.yml", ".gradci.yaml")
SPEC_FILES = ("gradci-ops.yml", "gradci-ops.yaml")
ENV_PREFIX = "GRADCI_"

# Each list of choices, once; the modules that act on a choice import it from here.
DEVICES = ("cpu", "cuda", "auto")
PROGRESS_MODES = ("auto", "rich", "plain", "none")
ALLOCATORS = ("auto", "system", "jemalloc", "tcmalloc")  # or the path of a malloc library
FAIL_ON = ("new", "any", "none")
BASELINE_MODES = ("artifact", "rerun", "none")
COMMENT_MODES = ("always", "changes", "failures", "off")

# The commands that take settings as flags; ``gradci config`` takes every one.
COMMANDS = ("run", "list", "ops", "samples", "repro", "compare", "publish", "baseline", "container", "config")
_SELECTING = ("run", "list", "ops", "repro")  # the commands that plan tests
_INSPECTING = (*_SELECTING, "samples")  # and the one that shows what tests check, op by op

# Headings of --help.
WHAT = "what to check"
HOW = "how to run"
BASE = "against the base branch"
PUBLISHING = "publishing"
RESULTS = "results"

# --- value parsers: (raw value, where it came from) -> typed value --------------------------------


def _words(value: Any, where: str) -> tuple[str, ...]:
    """A list, or a comma/whitespace-separated string, of non-empty words."""
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    elif isinstance(value, Sequence):
        items = []
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(f"{where}: expected strings, got {item!r}")
            items.extend(item.replace(",", " ").split())
    else:
        raise ConfigError(f"{where}: expected a list or a comma-separated string, got {value!r}")
    return tuple(items)


def _checks(value: Any, where: str) -> tuple[str, ...]:
    words = _words(value, where)
    try:
        return parse_checks(words)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None


def _dtypes(value: Any, where: str) -> tuple[str, ...]:
    try:
        return parse_dtypes(_words(value, where))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None


def _choice(allowed: tuple[str, ...]) -> Callable[[Any, str], str]:
    def parse(value: Any, where: str) -> str:
        # YAML 1.1 (PyYAML) reads an unquoted off as false: comment-mode: off means "off"
        text = "off" if value is False and "off" in allowed else str(value).strip().lower()
        if text not in allowed:
            raise ConfigError(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")
        return text

    return parse


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _optional_bool(value: Any, where: str) -> bool | None:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    return _bool(value, where)


def _positive_int_or_auto(value: Any, where: str) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("auto", ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a positive integer or 'auto', got {value!r}") from None
    if number < 1 or isinstance(value, bool):
        raise ConfigError(f"{where}: expected a positive integer or 'auto', got {value!r}")
    return number


def _count(value: Any, where: str) -> int:
    """A whole number, 0 or more."""
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a whole number (0 or more), got {value!r}") from None
    if number < 0 or isinstance(value, bool):
        raise ConfigError(f"{where}: expected a whole number (0 or more), got {value!r}")
    return number


def _count_or_auto(value: Any, where: str) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("auto", ""):
        return None
    return _count(value, where)


def _positive_int(value: Any, where: str) -> int:
    number = _positive_int_or_auto(value, where)
    if number is None:
        raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
    return number


def _text(value: Any, where: str) -> str | None:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value.strip() or None


def _name(value: Any, where: str) -> str:
    text = _text(value, where)
    if text is None or len(text) > 100 or "\n" in text:
        raise ConfigError(f"{where}: expected a name of 1 to 100 characters on one line, got {value!r}")
    return text


def _artifact_name(value: Any, where: str) -> str:
    # GitHub refuses artifact names with these characters (actions/upload-artifact)
    text = _name(value, where)
    bad = sorted(set(text) & set('":<>|*?\\/\r'))
    if bad:
        raise ConfigError(f"{where}: an artifact name cannot contain {' '.join(bad)}, got {value!r}")
    return text


def _positive_float(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number of seconds, got {value!r}") from None
    if not number > 0 or isinstance(value, bool):
        raise ConfigError(f"{where}: expected a positive number of seconds, got {value!r}")
    return number


def _path(value: Any, where: str) -> Path | None:
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    text = os.fspath(value).strip()
    return Path(text) if text else None  # an empty value turns an output off


def _shard(value: Any, where: str) -> Shard | None:
    text = str(value).strip()
    if not text:
        return None
    try:
        return Shard.parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _allocator(value: Any, where: str) -> str:
    text = str(value).strip()
    if not text:
        raise ConfigError(f"{where}: expected {', '.join(ALLOCATORS)} or a library path")
    return text.lower() if text.lower() in ALLOCATORS else text


@dataclass(frozen=True)
class Option:
    """A row of the table: a setting's parser and how flags, config files and --help spell it."""

    parse: Callable[[Any, str], Any]
    help: str
    commands: tuple[str, ...]  # those that take it as a flag, besides ``gradci config``
    group: str | None  # its heading in --help; None: among the command's own options
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    shown_default: str | None = None  # --help's "(default: ...)" where the value would not say it
    help_for: Mapping[str, str] = field(default_factory=dict)  # a command's own wording
    unset: str = ""  # how a config file or GRADCI_* says the default None: '' or 'auto'
    negatable: bool = False  # --name and --no-name
    action_input: bool = True  # an input of action.yml; False: a workflow has no use for it
    name: str = ""  # the Settings field; set from it
    default: Any = None  # set from the Settings field

    @property
    def key(self) -> str:
        return key_of(self.name)

    @property
    def env(self) -> str:
        return env_of(self.name)

    @property
    def flag(self) -> str:
        return "--" + self.key

    def help_text(self, command: str) -> str:
        text = self.help_for.get(command, self.help)
        shown = self.shown_default
        if shown is None and self.default not in (None, ()):
            shown = self.text(self.default)
        return f"{text} (default: {shown})" if shown is not None else text

    def text(self, value: Any) -> str:
        """A value as a flag, GRADCI_* or config file would give it (the parser reads it back)."""
        if value is None:
            return self.unset
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else repr(value)
        if isinstance(value, tuple):
            return ",".join(value)
        return str(value)


T = TypeVar("T")


def setting(
    default: Any,  # a value of T (tests/test_option_table.py: the parser reads its text back)
    parse: Callable[[Any, str], T],
    help: str,
    *,
    commands: tuple[str, ...],
    group: str | None,
    metavar: str | None = None,
    choices: tuple[str, ...] = (),
    shown_default: str | None = None,
    help_for: Mapping[str, str] | None = None,
    unset: str = "",
    negatable: bool = False,
    action_input: bool = True,
) -> T:
    """A field of ``Settings`` and its row of the option table."""
    option = Option(
        parse,
        help,
        commands,
        group,
        metavar=metavar,
        choices=choices,
        shown_default=shown_default,
        help_for=help_for or {},
        unset=unset,
        negatable=negatable,
        action_input=action_input,
    )
    made: T = field(default=default, metadata={"option": option})  # a Field, which dataclass reads
    return made


@dataclass(frozen=True)
class Settings:
    """Every setting: its type and default, and (``setting``) the rest of its row of the table.

    The order is that of --help and ``gradci config``.
    """

    # --- what to check
    ops: tuple[str, ...] = setting(
        (),
        _words,
        "comma-separated globs over op names: 'add', 'linalg.*', 'div.trunc_rounding'",
        commands=_SELECTING,
        group=WHAT,
        metavar="PATTERNS",
        shown_default="all",
    )
    exclude: tuple[str, ...] = setting(
        (), _words, "globs of ops to leave out", commands=_SELECTING, group=WHAT, metavar="PATTERNS"
    )
    checks: tuple[str, ...] = setting(
        DEFAULT_CHECKS,
        _checks,
        f"checks to run: {','.join(CHECK_NAMES)}, or a suite: {', '.join(GROUPS)} "
        f"(backward's five, forward's three, opcheck's four for torch.library custom ops); "
        f"+NAME adds to the default: +opcheck",
        commands=_INSPECTING,
        group=WHAT,
        metavar="LIST",
        shown_default=BACKWARD.name,
    )
    dtypes: tuple[str, ...] = setting(
        DTYPE_NAMES, _dtypes, "dtypes", commands=_INSPECTING, group=WHAT, metavar="LIST"
    )
    device: str = setting(
        "cpu", _choice(DEVICES), "device to test on", commands=_INSPECTING, group=WHAT, choices=DEVICES
    )
    op_modules: tuple[str, ...] = setting(
        (),
        _words,
        "modules exposing OpInfo lists: 'mypkg.gradci_ops' (attribute op_db) or 'mypkg.ops:MY_OPS'",
        commands=_INSPECTING,
        group=WHAT,
        metavar="MODULES",
    )
    spec: Path | None = setting(
        None,
        _path,
        "the project's operators declared in YAML; '' for none",
        commands=_INSPECTING,
        group=WHAT,
        metavar="FILE",
        shown_default=f"{SPEC_FILES[0]} here or in a folder above, up to the repository root",
    )
    # None: upstream ops unless the project names its own ops (use_upstream)
    upstream: bool | None = setting(
        None,
        _optional_bool,
        f"include PyTorch's {', '.join(UPSTREAM_DBS)}, or (--no-upstream) check only the project's own ops",
        commands=_INSPECTING,
        group=WHAT,
        shown_default="only when no op module or spec is given",
        unset="auto",
        negatable=True,
    )
    # An editable install in the workspace is detected; a workflow that builds a wheel from its
    # checkout sets GRADCI_TORCH_SOURCE (no action input: the action's steps pass GRADCI_* on).
    torch_source: Path | None = setting(
        None,
        _path,
        "the PyTorch checkout whose torch is tested (fork mode): upstream ops are located in it, and "
        "grad and gradgrad failures also on its tools/autograd/derivatives.yaml",
        commands=_INSPECTING,
        group=WHAT,
        metavar="DIR",
        shown_default="torch's own directory, when torch is imported from inside the repository",
        action_input=False,
    )
    shard: Shard | None = setting(
        None,
        _shard,
        "run the K-th of N duration-balanced shards",
        commands=_SELECTING,
        group=WHAT,
        metavar="K/N",
    )
    durations: Path | None = setting(
        None,
        _path,
        "earlier results whose test durations order the run and balance shards",
        commands=_SELECTING,
        group=WHAT,
        metavar="RESULTS_JSON",
    )
    # Iterating on failures locally; a workflow runs everything (no action input).
    failed_from: Path | None = setting(
        None,
        _path,
        "run only the tests that failed, errored or passed unexpectedly in these results "
        "(with --ops and the rest: the tests both select)",
        commands=("run", "list"),
        group=WHAT,
        metavar="RESULTS_JSON",
        action_input=False,
    )
    last_failed: bool = setting(
        False,
        _bool,
        "--failed-from the results the last run wrote (--json)",
        commands=("run", "list"),
        group=WHAT,
        negatable=True,
        action_input=False,
    )
    # --- how to run
    workers: int | None = setting(
        None,
        _positive_int_or_auto,
        "worker processes",
        commands=("run",),
        group=HOW,
        metavar="N",
        shown_default="one per core",
        unset="auto",
    )
    threads: int | None = setting(
        None,
        _positive_int_or_auto,
        "torch intra-op threads per worker",
        commands=("run",),
        group=HOW,
        metavar="N",
        shown_default="cores/workers",
        unset="auto",
    )
    timeout: float = setting(
        300.0,
        _positive_float,
        "per-test limit; a test past it is an error",
        commands=("run",),
        group=HOW,
        metavar="SECONDS",
    )
    # a workflow's log is never a terminal
    progress: str = setting(
        "auto",
        _choice(PROGRESS_MODES),
        "progress display",
        commands=("run",),
        group=HOW,
        choices=PROGRESS_MODES,
        shown_default="a bar on a terminal, lines in a log",
        action_input=False,
    )
    allocator: str = setting(
        "auto",
        _allocator,
        f"malloc of the test processes: {', '.join(ALLOCATORS)} or a library path; auto = jemalloc or "
        "tcmalloc when installed, else the system's; Linux only",
        commands=("run",),
        group=HOW,
        metavar="NAME",
    )
    reruns: int = setting(
        1,
        _count,
        "re-run each failed or errored test up to N times (0: never), each in a fresh worker; "
        "a test that then passes is flaky",
        commands=("run",),
        group=HOW,
        metavar="N",
    )
    max_worker_restart: int | None = setting(
        None,
        _count_or_auto,
        "workers that die without running a test (a crash in their setup) are replaced up to N "
        "times in all, then the run ends with exit code 7; a worker that crashes in a test is always "
        "replaced, as that test is reported",
        commands=("run",),
        group=HOW,
        metavar="N",
        shown_default="4 per worker",
        unset="auto",
    )
    # --- against the base branch
    baseline: Path | None = setting(
        None,
        _path,
        "base results: compare with them at the end (their durations also order the run)",
        commands=("run", "publish"),
        group=BASE,
        metavar="BASE_JSON",
        help_for={"publish": "compare with this file (no search)"},
    )
    baseline_mode: str = setting(
        "artifact",
        _choice(BASELINE_MODES),
        "where base results come from: artifact = the base branch's results artifact at the merge "
        "base or before; rerun = the merge base's results that 'gradci baseline' made; none = no "
        "comparison",
        commands=("publish", "baseline"),
        group=BASE,
        choices=BASELINE_MODES,
        help_for={"baseline": "only rerun makes base results here; artifact and none leave nothing to do"},
    )
    baseline_commits: int = setting(
        20,
        _positive_int,
        "base-branch commits searched for an artifact, from the merge base back",
        commands=("publish",),
        group=BASE,
        metavar="N",
    )
    baseline_setup: str | None = setting(
        None,
        _text,
        "shell command run in the base checkout first (e.g. 'pip install -e .')",
        commands=("baseline",),
        group=BASE,
        metavar="COMMAND",
    )
    artifact_name: str = setting(
        "gradci-results-{device}",
        _artifact_name,
        "results artifact name, {device} replaced",
        commands=("publish",),
        group=BASE,
        metavar="NAME",
    )
    fail_on: str = setting(
        "new",
        _choice(FAIL_ON),
        "exit code 1 on: new = a new failure (without base results: any failure), any = any failing "
        "test, none = never",
        commands=("run", "compare", "publish"),
        group=BASE,
        choices=FAIL_ON,
    )
    # --- publishing (gradci publish)
    check_name: str = setting(
        "gradci", _name, "check run name", commands=("publish",), group=PUBLISHING, metavar="NAME"
    )
    comment_mode: str = setting(
        "always",
        _choice(COMMENT_MODES),
        "when to write the pull-request comment; unless off, an existing one is always updated",
        commands=("publish",),
        group=PUBLISHING,
        choices=COMMENT_MODES,
    )
    # --- where results go; the action's json and junit inputs, which it always sets
    json: Path | None = setting(
        Path("gradci-results.json"),
        _path,
        "results JSON; '' for none",
        commands=("run", "publish", "baseline"),
        group=RESULTS,
        metavar="PATH",
        help_for={"publish": "default RESULTS_JSON", "baseline": "default RESULTS_JSON"},
    )
    junit: Path | None = setting(
        Path("gradci-junit.xml"),
        _path,
        "JUnit XML; '' for none",
        commands=("run", "publish"),
        group=RESULTS,
        metavar="PATH",
        help_for={"publish": "JUnit XML named in the outputs"},
    )
    # --- gradci container (a workflow runs gradci in the job, or in a container job)
    image: str | None = setting(
        None,
        _text,
        "image to run; also the 'image' option of the config file, GRADCI_IMAGE",
        commands=("container",),
        group=None,
        metavar="IMAGE",
        shown_default="ghcr.io/gradci/gradci:VERSION, or VERSION-cuda with --gpus",
        action_input=False,
    )

    @property
    def use_upstream(self) -> bool:
        if self.upstream is not None:
            return self.upstream
        return not (self.op_modules or self.spec)


OPTIONS: tuple[Option, ...] = tuple(
    replace(f.metadata["option"], name=f.name, default=f.default) for f in fields(Settings)
)
BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}
PARSERS: Mapping[str, Callable[[Any, str], Any]] = {option.name: option.parse for option in OPTIONS}


def for_command(command: str) -> tuple[Option, ...]:
    """The settings ``command`` takes as flags, in table order."""
    return tuple(o for o in OPTIONS if command == "config" or command in o.commands)


def key_of(name: str) -> str:
    """The config-file and flag spelling of a setting: op_modules -> op-modules."""
    return name.replace("_", "-")


def env_of(name: str) -> str:
    return ENV_PREFIX + name.upper()


def project_root(directory: Path) -> Path | None:
    """The repository ``directory`` is in: GITHUB_WORKSPACE when it is inside it, else the nearest
    folder with a ``.git`` (a directory, or a file in a worktree or submodule); None outside one."""
    here = directory.resolve()
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace:
        root = Path(workspace).resolve()
        if here == root or root in here.parents:
            return root
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


def search_path(directory: Path) -> list[Path]:
    """Where the spec and the config file are looked for: ``directory``, then each folder above it
    up to the repository root (never above it: another project's files are not this one's)."""
    here = directory.resolve()
    root = project_root(here)
    if root is None:
        return [here]
    return [here, *(folder for folder in here.parents if folder == root or root in folder.parents)]


def _shown(path: Path) -> Path:
    """A found file as the user would name it (it goes into repro commands and results): relative
    to the working directory when it is there or above it, else as it is."""
    cwd = Path.cwd().resolve()
    folder = path.parent.resolve()
    if folder == cwd or folder in cwd.parents:
        return Path(os.path.relpath(folder / path.name, cwd))
    return path


def _relative_to(value: Path, folder: Path) -> Path:
    if value.is_absolute():
        return value
    cwd = Path.cwd().resolve()
    if folder == cwd or folder in cwd.parents:
        return Path(os.path.relpath(folder / value, cwd))
    return folder / value


def find_spec(directory: Path) -> Path | None:
    """The spec of the project ``directory`` is in, if it has one (``--spec`` names another): the
    first folder from ``directory`` up to the repository root with a ``gradci-ops.yml``."""
    for folder in search_path(directory):
        found = [name for name in SPEC_FILES if (folder / name).is_file()]
        if len(found) > 1:
            raise SpecError(
                f"both {_shown(folder / found[0])} and {found[1]} are there", hint="keep one of them"
            )
        if found:
            return _shown(folder / found[0])
    return None


def find_config(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The project's gradci configuration: ``.gradci.yml`` or ``[tool.gradci]`` in pyproject.toml, in
    the first folder from ``directory`` up to the repository root that has one."""
    for folder in search_path(directory):
        found = _config_in(folder)
        if found is not None:
            return found
    return None


def _config_in(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    directory = directory.resolve()  # errors name the file in full, wherever it was found
    found: list[tuple[Path, dict[str, Any]]] = []
    for name in CONFIG_FILES:
        path = directory / name
        if path.is_file():
            found.append((path, _read_yaml_config(path)))
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{pyproject}: not valid TOML: {exc}") from None
        section = data.get("tool", {}).get("gradci")
        if section is not None:  # a pyproject.toml without [tool.gradci] configures nothing here
            if not isinstance(section, dict):
                raise ConfigError(f"{pyproject}: [tool.gradci] must be a table")
            found.append((pyproject, section))
    if len(found) > 1:
        raise ConfigError(
            f"gradci is configured in both {found[0][0].name} and {found[1][0].name}",
            hint="keep one of them",
        )
    return found[0] if found else None


def _read_yaml_config(path: Path) -> dict[str, Any]:
    from .safeyaml import load

    data = load(path, ConfigError, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return data


DEFAULT = "default"
FOUND = "found in the project"  # the source of a spec no source names


@dataclass(frozen=True)
class Resolved:
    """The settings, and where each value came from: ``DEFAULT``, ``FOUND``, the config file and key
    (``pyproject.toml: workers``), the ``GRADCI_*`` variable or the flag, as errors name them."""

    settings: Settings
    sources: Mapping[str, str]  # setting name -> its source
    config: Path | None = None  # the config file read, if any

    def changed(self, command: str | None = None) -> tuple[Option, ...]:
        """The settings (of those ``command`` takes) whose values are not the defaults."""
        chosen = OPTIONS if command is None else for_command(command)
        return tuple(o for o in chosen if getattr(self.settings, o.name) != o.default)


def resolve(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config: Path | None = None,
    directory: Path | None = None,
) -> Settings:
    """Merge the sources, later ones winning. ``flags`` holds only the flags actually given."""
    return resolve_with_sources(flags, environ=environ, config=config, directory=directory).settings


def resolve_with_sources(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config: Path | None = None,
    directory: Path | None = None,
) -> Resolved:
    """``resolve``, saying where each value came from."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources = {name: DEFAULT for name in BY_NAME}

    def take(name: str, raw: Any, where: str) -> None:
        values[name] = BY_NAME[name].parse(raw, where)
        sources[name] = where

    source: tuple[Path, dict[str, Any]] | None
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"config file {config} does not exist")
        source = (
            config,
            _read_yaml_config(config) if config.suffix in (".yml", ".yaml") else _read_toml_section(config),
        )
    else:
        source = find_config(directory or Path.cwd())
    looked_in = (directory or Path.cwd()).resolve()
    if source is not None:
        path, section = source
        for key, raw in section.items():
            name = str(key).replace("-", "_")
            if name not in BY_NAME:
                raise ConfigError(f"{path}: unknown option {key!r}", hint=_suggest(str(key)))
            if name == "ops" and isinstance(raw, list) and any(isinstance(item, dict) for item in raw):
                raise ConfigError(
                    f"{path}: ops: expected op name patterns (as --ops), got operator definitions",
                    hint="declare operators in gradci-ops.yml (--spec), apart from the configuration",
                )
            take(name, raw, f"{path}: {key}")
            if config is None and isinstance(values[name], Path) and path.parent != looked_in:
                # a config file found above the working directory names paths from its own folder
                values[name] = _relative_to(values[name], path.parent)

    for option in OPTIONS:
        raw_env = environ.get(option.env)
        if raw_env is not None:
            take(option.name, raw_env, option.env)

    for name, raw in (flags or {}).items():
        if raw is not None:
            take(name, raw, BY_NAME[name].flag)
    if "spec" not in values:  # not named anywhere: the project's gradci-ops.yml, if it has one
        values["spec"] = find_spec(directory or Path.cwd())
        if values["spec"] is not None:
            sources["spec"] = FOUND
    return Resolved(Settings(**values), sources, source[0] if source is not None else None)


def config_lines(resolved: Resolved) -> list[str]:
    """Every setting as a line of ``.gradci.yml``, with where its value came from as a comment."""
    rows = [
        (f"{o.key}: {_yaml(o, getattr(resolved.settings, o.name))}", resolved.sources[o.name])
        for o in OPTIONS
    ]
    width = min(max(len(entry) for entry, _ in rows), 40)
    return [f"{entry:<{width}}  # {source}" for entry, source in rows]


def changed_line(resolved: Resolved, command: str) -> str | None:
    """One line: the settings of ``command`` that are not the defaults, and where they came from."""
    changed = [
        f"{o.key}={_yaml(o, getattr(resolved.settings, o.name))} ({resolved.sources[o.name]})"
        for o in resolved.changed(command)
    ]
    return f"settings other than the defaults: {', '.join(changed)}" if changed else None


# A YAML plain scalar of these characters is a string unless YAML reads it as something else
# (true, off, 1.5, 2024-01-01): _yaml asks the YAML parser.
_PLAIN = re.compile(r"[\w.][\w.,/+*{}=@:~-]*(?<!:)")


def _yaml(option: Option, value: Any) -> str:
    """``value`` as YAML that ``option``'s parser reads back to it."""
    if isinstance(value, tuple) and not value:
        return "[]"
    text = option.text(value)
    if isinstance(value, bool | int | float):
        return text
    if _PLAIN.fullmatch(text):
        import yaml

        if yaml.safe_load(f"k: {text}") == {"k": text}:
            return text
    return json.dumps(text)


def _read_toml_section(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    section = data.get("tool", {}).get("gradci", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.gradci] must be a table")
    return section


def _suggest(word: str) -> str:
    keys = [option.key for option in OPTIONS]
    close = difflib.get_close_matches(word.lower().replace("_", "-"), keys, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known options: {', '.join(keys)}"
