"""A project's operators declared in YAML (``gradci-ops.yml``), turned into real OpInfo objects.

``parse`` reads and validates the file without importing torch (``model`` holds what it says);
``build`` imports what the spec names and builds one ``OpInfo`` per entry; ``probe`` runs each op
once, in a forked child, before any test runs. The file format: docs/own-operators.md#the-spec.
"""

from .build import as_op, build_opinfo, load_spec, resolve_object
from .parse import parse_spec
from .probe import probe_ops

__all__ = ["as_op", "build_opinfo", "load_spec", "parse_spec", "probe_ops", "resolve_object"]
