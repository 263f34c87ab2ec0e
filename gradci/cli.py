"""Command line: parse, resolve options, dispatch. No work happens here."""

from __future__ import annotations

import argparse
import os
import select
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, container, options
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTPUT_CLOSED, GradciError
from .options import CONFIG_FILES, Resolved, Settings

EPILOG = """\
options come from (later wins): defaults, [tool.gradci] in pyproject.toml or .gradci.yml,
GRADCI_* environment variables (GRADCI_WORKERS=4), then flags; 'gradci config' shows them.
exit codes: 0 passed, 1 tests failed, 2 usage/config error, 3 bad results file,
4 GitHub API error, 5 container error, 6 an output cannot be written, 7 workers cannot start,
70 internal error, 130 interrupted, 141 the output's reader went away (0 for list, ops, samples,
config).
"""


def _add_settings(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of the settings ``command`` takes, from the option table, under its headings."""
    groups: dict[str | None, argparse._ActionsContainer] = {None: parser}
    for option in options.for_command(command):
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        help = option.help_text(command).replace("%", "%%")  # argparse formats help with %
        if option.negatable:
            groups[option.group].add_argument(
                option.flag, dest=option.name, action=argparse.BooleanOptionalAction, help=help
            )
            continue
        # Choices are checked by the option's parser, as in a config file: one line naming the flag.
        metavar = "{" + ",".join(option.choices) + "}" if option.choices else option.metavar
        groups[option.group].add_argument(option.flag, dest=option.name, metavar=metavar, help=help)
    if command != "container":
        parser.add_argument(
            "--config",
            metavar="FILE",
            type=Path,
            help=f"config file (default: {CONFIG_FILES[0]} or [tool.gradci] in pyproject.toml)",
        )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def resolved_from(args: argparse.Namespace) -> Resolved:
    """The settings of the flags given (those of ``args.command``), the environment and the config."""
    flags = {o.name: getattr(args, o.name, None) for o in options.for_command(args.command)}
    return options.resolve_with_sources(flags, config=getattr(args, "config", None))


def settings_from(args: argparse.Namespace) -> Settings:
    return resolved_from(args).settings


def _cmd_run(args: argparse.Namespace) -> int:
    from . import allocator, commands

    resolved = resolved_from(args)
    if args.from_command_line:  # never replace a process that called main() itself
        allocator.reexec_with(resolved.settings.allocator, sys.argv[1:])
    return commands.run(resolved, sys.argv)


def _cmd_list(args: argparse.Namespace) -> int:
    from . import commands

    return commands.list_tests(settings_from(args))


def _cmd_ops(args: argparse.Namespace) -> int:
    from . import commands

    return commands.list_ops(settings_from(args), verbose=args.verbose)


def _cmd_samples(args: argparse.Namespace) -> int:
    from . import commands

    return commands.show_samples(settings_from(args), args.op_names)


def _cmd_repro(args: argparse.Namespace) -> int:
    from . import commands

    return commands.repro(settings_from(args), args.test_id, args.sample)


def _cmd_compare(args: argparse.Namespace) -> int:
    from . import commands

    settings = settings_from(args)
    return commands.compare_files(
        args.base,
        args.head,
        fail_on=settings.fail_on,
        markdown=args.markdown,
        json_path=args.comparison_json,
        max_chars=args.max_chars,
    )


def _cmd_merge(args: argparse.Namespace) -> int:
    from . import commands

    return commands.merge_results(
        args.files,
        output=args.output,
        junit_path=args.junit_path,
        allow_overlap=args.allow_overlap,
        allow_mixed=args.allow_mixed,
        argv=sys.argv,
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from . import commands

    return commands.report_file(
        args.results,
        baseline=args.baseline_path,
        fmt=args.format,
        max_chars=args.max_chars,
        output=args.output,
        title=args.title,
    )


def _cmd_publish(args: argparse.Namespace) -> int:
    from .github.publish import publish

    return publish(settings_from(args), args.results)


def _add_publish(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        metavar="RESULTS_JSON",
        type=Path,
        nargs="?",
        help="head results (default: --json, gradci-results.json; in a workflow_run: downloaded "
        "from the triggering run and written there)",
    )
    _add_settings(parser, "publish")


PUBLISH_EPILOG = """\
environment: GITHUB_TOKEN (or GH_TOKEN) and the GitHub Actions variables (GITHUB_REPOSITORY,
GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_API_URL, GITHUB_STEP_SUMMARY, GITHUB_OUTPUT, ...).
the token needs checks: write, pull-requests: write, actions: read; where it cannot write
(a fork's pull request), annotations go to the log and the report to the job summary.
"""


def _cmd_baseline(args: argparse.Namespace) -> int:
    from .github.rerun import prepare

    return prepare(settings_from(args), args.results)


def _add_baseline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        metavar="RESULTS_JSON",
        type=Path,
        nargs="?",
        help="head results whose selection the base runs (default: --json, gradci-results.json)",
    )
    _add_settings(parser, "baseline")


BASELINE_EPILOG = """\
writes gradci-base-results.json and gradci-baseline.json (which commit, or why none) beside
RESULTS_JSON, for 'gradci publish --baseline-mode rerun'. Run it before publishing and without the
token: it runs the base's code. The base commit comes from git and the GitHub event
(GITHUB_EVENT_PATH): pull requests: the merge base of base.sha and head.sha; push: before; others:
the merge base with the default branch, on it the commit before. A shallow clone is deepened with
git fetch. Exit 0 also when no base results could be made (the record says why).
"""


def _cmd_init(args: argparse.Namespace) -> int:
    from . import commands

    return commands.init(args.packages, output=args.output, force=args.force, workflow=args.workflow)


def _add_init(parser: argparse.ArgumentParser) -> None:
    # One-off arguments of a command that writes files, as merge's and report's: not settings, so
    # no config key or GRADCI_* (a GRADCI_FORCE in an environment must never replace files).
    parser.add_argument(
        "packages",
        metavar="PACKAGE",
        nargs="*",
        help="the packages to import and search (default: guessed from pyproject.toml and the "
        "directory's top-level packages)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        type=Path,
        default=Path("gradci-ops.yml"),
        help="the spec to write (default: gradci-ops.yml)",
    )
    parser.add_argument("--force", action="store_true", help="replace the files if they exist")
    parser.add_argument(
        "--workflow",
        action="store_true",
        help="also write .github/workflows/gradci.yml: the pull-request check and the base results "
        "on the default branch",
    )


INIT_EPILOG = """\
run it in the project's repository, where its package imports (pip install -e . first for a
compiled extension). Each op gets one sample built from its signature, tried once; what it had to
guess is marked '# TODO(gradci init)', and gradci run says how many such lines are left.
"""


def _cmd_config(args: argparse.Namespace) -> int:
    from . import commands

    return commands.show_config(resolved_from(args))


def _cmd_container(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    return container.command(
        args.gradci_args, image=settings.image, gpus=args.gpus, pull=args.pull, user=args.user, env=args.env
    )


def _add_container(parser: argparse.ArgumentParser) -> None:
    _add_settings(parser, "container")
    parser.add_argument(
        "--gpus",
        action="store_true",
        help="pass all GPUs through (the engine needs the NVIDIA Container Toolkit); add --device cuda "
        "to the gradci arguments",
    )
    parser.add_argument(
        "--pull",
        choices=container.PULL_POLICIES,
        default="missing",
        help="pull the image: when not present (default), always, or never",
    )
    parser.add_argument(
        "--user",
        metavar="UID:GID",
        help="user to run as (default: yours, so the files written belong to you)",
    )
    parser.add_argument(
        "-e",
        "--env",
        metavar="NAME[=VALUE]",
        action="append",
        default=[],
        help="set a variable in the container (GRADCI_* variables are passed on anyway)",
    )
    parser.add_argument(
        "gradci_args",
        metavar="-- GRADCI_ARGS",
        nargs=argparse.REMAINDER,
        help="the gradci command to run in the image, e.g. -- run --ops 'add*'",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradci",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check backward-gradient correctness of PyTorch operators, test for test as PyTorch's "
        "test_ops_gradients.py does, and tell a pull request what it newly broke.",
    )
    parser.add_argument("--version", action="version", version=f"gradci {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    run = command("run", _cmd_run, "run the gradient checks and write JUnit XML and results JSON")
    _add_settings(run, "run")

    listing = command("list", _cmd_list, "print the test ids 'run' would execute, one per line")
    _add_settings(listing, "list")

    ops = command("ops", _cmd_ops, "print the selected operators: name, database, definition")
    ops.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="per op, its sample inputs and the gradcheck settings of its tests, as 'gradci samples'",
    )
    _add_settings(ops, "ops")

    samples = command(
        "samples",
        _cmd_samples,
        "print, per op, each sample input's tensors and the gradcheck settings each check uses",
    )
    samples.add_argument(
        "op_names", metavar="OP", nargs="+", help="op names or globs, as --ops takes them: abs, 'linalg.*'"
    )
    _add_settings(samples, "samples")

    repro = command("repro", _cmd_repro, "re-run one test in this process with full output")
    repro.add_argument("test_id", metavar="TEST_ID", help="e.g. test_fn_grad_add_cpu_float64")
    repro.add_argument("--sample", type=int, metavar="N", help="only sample input N")
    _add_settings(repro, "repro")

    comparing = command(
        "compare",
        _cmd_compare,
        "compare head results with base results: new failures, still failing, fixed, flaky, ...",
    )
    comparing.add_argument("base", metavar="BASE_JSON", type=Path, help="results of the base branch")
    comparing.add_argument("head", metavar="HEAD_JSON", type=Path, help="results of the change")
    comparing.add_argument("--markdown", metavar="PATH", type=Path, help="also write the Markdown report")
    comparing.add_argument(
        "--json",
        dest="comparison_json",
        metavar="PATH",
        type=Path,
        help="also write, per category, the test ids (JSON, for machines)",
    )
    comparing.add_argument(
        "--max-chars", metavar="N", type=_positive, help="size limit of the Markdown report (UTF-8 bytes)"
    )
    _add_settings(comparing, "compare")

    publishing = command(
        "publish",
        _cmd_publish,
        "in GitHub Actions: compare with the base branch's results and publish a check run with "
        "annotations, a pull-request comment, the job summary and step outputs",
    )
    publishing.epilog = PUBLISH_EPILOG + EPILOG
    _add_publish(publishing)

    baseline = command(
        "baseline",
        _cmd_baseline,
        "in GitHub Actions, for --baseline-mode rerun: run the suite on the merge base in a git "
        "worktree, for 'gradci publish' to compare with",
    )
    baseline.epilog = BASELINE_EPILOG + EPILOG
    _add_baseline(baseline)

    merging = command("merge", _cmd_merge, "join the results of shards into one results file")
    merging.add_argument("files", metavar="RESULTS_JSON", type=Path, nargs="+", help="results to join")
    merging.add_argument(
        "-o", "--output", metavar="PATH", type=Path, required=True, help="merged results JSON"
    )
    merging.add_argument(
        "--junit", dest="junit_path", metavar="PATH", type=Path, help="also write JUnit XML of the merge"
    )
    merging.add_argument(
        "--allow-overlap",
        action="store_true",
        help="merge files that share test ids (the worse result of each counts)",
    )
    merging.add_argument(
        "--allow-mixed",
        action="store_true",
        help="merge results of different torch builds or devices",
    )

    reporting = command("report", _cmd_report, "summarise results (against base results) for people")
    reporting.add_argument("results", metavar="RESULTS_JSON", type=Path, help="results to summarise")
    reporting.add_argument(
        "--baseline",
        dest="baseline_path",
        metavar="BASE_JSON",
        type=Path,
        help="base results to compare with",
    )
    reporting.add_argument(
        "--format", choices=("markdown", "text"), default="markdown", help="default: markdown"
    )
    reporting.add_argument(
        "--max-chars",
        metavar="N",
        type=_positive,
        help="size limit in UTF-8 bytes: 65536 for a PR comment, 65535 for a check-run summary, "
        "1048576 for the job summary (default: none)",
    )
    reporting.add_argument("-o", "--output", metavar="PATH", type=Path, help="write here, not to stdout")
    reporting.add_argument("--title", default="gradci", help="the report's title (default: gradci)")

    _add_container(
        command(
            "container",
            _cmd_container,
            "run a gradci command in the gradci container image, on the current directory",
        )
    )

    initializing = command(
        "init",
        _cmd_init,
        "write a starting gradci-ops.yml for the project's operators (torch.library ops and "
        "autograd.Functions of its package), and with --workflow the GitHub workflow",
    )
    initializing.epilog = INIT_EPILOG + EPILOG
    _add_init(initializing)

    configuring = command(
        "config",
        _cmd_config,
        "print the resolved settings, one per line as in .gradci.yml, each with where it comes from "
        "(default, config file, GRADCI_* variable or flag)",
    )
    _add_settings(configuring, "config")
    return parser


def _prepare_environment() -> None:
    # gradci reports the failing sample and a repro command itself; torch's own pytest-oriented
    # repro text would only mislead.
    os.environ.setdefault("PYTORCH_PRINT_REPRO_ON_FAILURE", "0")
    # Ask NVML, not the CUDA runtime, whether a GPU exists: keeps the parent fork-safe.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


# Commands whose output is a listing: a reader that stops early (| head) is normal use.
_LISTINGS = ("list", "ops", "samples", "config")


def _reader_gone(stream: Any) -> bool:
    """Whether ``stream`` is a pipe whose reading end is closed (POLLERR on its write end)."""
    try:
        poll = select.poll()
        poll.register(stream.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor
        return True


def _output_closed(command: str) -> int:
    from .console import silence

    for stream in (sys.stdout, sys.stderr):
        silence(stream)  # also keeps Python's flush at exit from complaining
    return EXIT_OK if command in _LISTINGS else EXIT_OUTPUT_CLOSED


def _internal_error(exc: Exception) -> None:
    from .github.workflow_commands import end_group, escape_workflow_commands, log_line, start_group

    message = log_line(f"gradci: internal error: {type(exc).__name__}: {exc}")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        # In a CI log there is no rerunning with GRADCI_DEBUG=1: the traceback is there, folded.
        start_group("gradci: internal error traceback", sys.stderr)
        text = "".join(traceback.format_exception(exc))
        print(escape_workflow_commands(text), end="", file=sys.stderr)
        end_group(sys.stderr)
        print(f"{message} (a bug in gradci; the traceback is in the log group above)", file=sys.stderr)
    else:
        print(f"{message} (set GRADCI_DEBUG=1 for the traceback)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    _prepare_environment()
    args = build_parser().parse_args(argv)
    args.from_command_line = argv is None
    handler: Callable[[argparse.Namespace], Any] = args.handler
    try:
        return int(handler(args))
    except GradciError as exc:
        from .github.workflow_commands import log_line

        print(log_line(f"gradci: error: {exc}"), file=sys.stderr)
        for line in (exc.details or "").splitlines():
            print(log_line(f"  {line}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gradci: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # A closed pipe is a quiet end where it is gradci's output; one of its own pipes is a bug.
        if isinstance(exc, BrokenPipeError) and (_reader_gone(sys.stdout) or _reader_gone(sys.stderr)):
            return _output_closed(args.command)
        if os.environ.get("GRADCI_DEBUG"):
            raise
        _internal_error(exc)
        return EXIT_INTERNAL


def entry() -> NoReturn:
    """The ``gradci`` command and ``python -m gradci``: ``main``, then exit without tearing torch down."""
    code = main()
    if "torch" in sys.modules:
        # An interpreter that imported torch and its op databases spends over a second freeing them
        # one by one at exit. By now every output is written and closed, and gradci registers no
        # exit hooks: flush and leave. A flush that fails takes the normal exit, which reports it.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
