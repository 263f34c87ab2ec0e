"""Options, resolved in one place: defaults < config file < GRADCI_* environment < command-line flags.

Every option has one name used everywhere: ``--op-modules`` on the command line, ``op-modules`` in
``[tool.gradci]`` of pyproject.toml or in ``.gradci.yml``, ``GRADCI_OP_MODULES`` in the environment.
The result is a typed, frozen ``Settings``; errors name the source of the bad value.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .allocator import CHOICES as ALLOCATORS
from .checks import CHECK_NAMES, DTYPE_NAMES
from .errors import ConfigError, SpecError
from .plan import Shard, parse_checks, parse_dtypes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILES = (".gradci.yml", ".gradci.yaml")
SPEC_FILES = ("gradci-ops.yml", "gradci-ops.yaml")
ENV_PREFIX = "GRADCI_"


@dataclass(frozen=True)
class Settings:
    # what to test
    ops: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    checks: tuple[str, ...] = CHECK_NAMES
    dtypes: tuple[str, ...] = DTYPE_NAMES
    device: str = "cpu"
    upstream: bool | None = None  # None: upstream ops unless the project names its own ops
    op_modules: tuple[str, ...] = ()
    spec: Path | None = None
    shard: Shard | None = None
    # how to run
    workers: int | None = None  # None: one per core
    threads: int | None = None  # torch intra-op threads per worker; None: cores / workers
    timeout: float = 300.0
    durations: Path | None = None
    reruns: int = 1  # re-runs of a failing test, each in a fresh worker; passing on one makes it flaky
    max_worker_restart: int | None = None  # workers dying before a test, replaced; None: 4 per worker
    allocator: str = "auto"  # malloc of the test processes: auto | system | jemalloc | tcmalloc | PATH
    # against the base branch
    baseline: Path | None = None  # base results: compared at the end; their durations order the run
    fail_on: str = "new"  # new | any | none: what makes the exit code 1
    # publishing to GitHub (gradci publish)
    baseline_mode: str = "artifact"  # artifact | rerun | none: where base results come from
    baseline_commits: int = 20  # commits of the base branch searched for a results artifact
    baseline_setup: str | None = None  # shell command preparing the base checkout (baseline-mode rerun)
    artifact_name: str = "gradci-results-{device}"
    check_name: str = "gradci"
    comment_mode: str = "always"  # always | changes | failures | off
    # where results go
    json: Path | None = Path("gradci-results.json")
    junit: Path | None = Path("gradci-junit.xml")
    progress: str = "auto"
    # gradci container
    image: str | None = None  # None: the image of this gradci version

    @property
    def use_upstream(self) -> bool:
        if self.upstream is not None:
            return self.upstream
        return not (self.op_modules or self.spec)


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


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    return _words(value, where)


def _checks(value: Any, where: str) -> tuple[str, ...]:
    words = _words(value, where)
    if words == ("all",):
        return CHECK_NAMES
    try:
        return parse_checks(words)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None


def _dtypes(value: Any, where: str) -> tuple[str, ...]:
    try:
        return parse_dtypes(_words(value, where))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None


def _choice(*allowed: str) -> Callable[[Any, str], str]:
    def parse(value: Any, where: str) -> str:
        text = str(value).strip().lower()
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


PARSERS: Mapping[str, Callable[[Any, str], Any]] = {
    "ops": _patterns,
    "exclude": _patterns,
    "checks": _checks,
    "dtypes": _dtypes,
    "device": _choice("cpu", "cuda", "auto"),
    "upstream": _optional_bool,
    "op_modules": _words,
    "spec": _path,
    "shard": _shard,
    "workers": _positive_int_or_auto,
    "threads": _positive_int_or_auto,
    "timeout": _positive_float,
    "durations": _path,
    "reruns": _count,
    "max_worker_restart": _count_or_auto,
    "allocator": _allocator,
    "baseline": _path,
    "fail_on": _choice("new", "any", "none"),
    "baseline_mode": _choice("artifact", "rerun", "none"),
    "baseline_commits": _positive_int,
    "baseline_setup": _text,
    "artifact_name": _artifact_name,
    "check_name": _name,
    "comment_mode": _choice("always", "changes", "failures", "off"),
    "json": _path,
    "junit": _path,
    "progress": _choice("auto", "rich", "plain", "none"),
    "image": _text,
}
assert set(PARSERS) == {f.name for f in fields(Settings)}, "every setting needs a parser"


def key_of(name: str) -> str:
    """The config-file and flag spelling of a setting: op_modules -> op-modules."""
    return name.replace("_", "-")


def env_of(name: str) -> str:
    return ENV_PREFIX + name.upper()


def find_spec(directory: Path) -> Path | None:
    """The spec in a project directory, if there is one (``--spec`` names another)."""
    found = [name for name in SPEC_FILES if (directory / name).is_file()]
    if len(found) > 1:
        raise SpecError(f"both {found[0]} and {found[1]} are here", hint="keep one of them")
    if not found:
        return None
    return Path(found[0]) if directory.resolve() == Path.cwd().resolve() else directory / found[0]


def find_config(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The project's gradci configuration: ``.gradci.yml`` or ``[tool.gradci]`` in pyproject.toml."""
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
        if section is not None:
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


def resolve(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config: Path | None = None,
    directory: Path | None = None,
) -> Settings:
    """Merge the sources, later ones winning. ``flags`` holds only the flags actually given."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}

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
    if source is not None:
        path, section = source
        for key, raw in section.items():
            name = str(key).replace("-", "_")
            if name not in PARSERS:
                raise ConfigError(f"{path}: unknown option {key!r}", hint=_suggest(str(key)))
            if name == "ops" and isinstance(raw, list) and any(isinstance(item, dict) for item in raw):
                raise ConfigError(
                    f"{path}: ops: expected op name patterns (as --ops), got operator definitions",
                    hint="declare operators in gradci-ops.yml (--spec), apart from the configuration",
                )
            values[name] = PARSERS[name](raw, f"{path}: {key}")

    for name, parse in PARSERS.items():
        raw_env = environ.get(env_of(name))
        if raw_env is not None:
            values[name] = parse(raw_env, env_of(name))

    for name, raw in (flags or {}).items():
        if raw is not None:
            values[name] = PARSERS[name](raw, "--" + key_of(name))
    if "spec" not in values:  # not named anywhere: the project's gradci-ops.yml, if it has one
        values["spec"] = find_spec(directory or Path.cwd())
    return Settings(**values)


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
    keys = [key_of(name) for name in PARSERS]
    close = difflib.get_close_matches(word.lower().replace("_", "-"), keys, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known options: {', '.join(keys)}"
