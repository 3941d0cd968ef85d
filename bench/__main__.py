"""``python -m bench run GRID | status GRID | list | check | perf``."""

from __future__ import annotations

import argparse
import sys

from bench.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, OneLineParser, quiet_broken_pipe
from bench.errors import BenchError


def _cmd_list(args: argparse.Namespace) -> int:
    from bench.registry import DATASETS, METHODS, NETWORKS, NOISE_DRAWS, NOISE_MODELS

    for title, registry in (("datasets", DATASETS), ("noise models", NOISE_MODELS),
                            ("noise draws", NOISE_DRAWS), ("networks", NETWORKS),
                            ("methods", METHODS)):
        print(f"{title}:")
        for name in registry.names():
            obj = registry.get(name)
            doc = (obj.__doc__ or sys.modules[obj.__module__].__doc__ or "").strip().splitlines()
            print(f"  {name:<24} {doc[0] if doc else ''}")
    _list_grids()
    return 0


def _list_grids() -> None:
    """The shipped grids, each with its file's ``description``."""
    import yaml

    from bench.left_out import GRIDS_DIR

    print("grids (bench/grids/):")
    for path in sorted(GRIDS_DIR.glob("*.yaml")):
        try:
            description = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("description", "")
        except (OSError, yaml.YAMLError, AttributeError) as err:
            description = f"(unreadable: {type(err).__name__})"
        print(f"  {path.stem:<24} {description}")


def _cmd_perf(args: argparse.Namespace) -> int:
    from bench import perf

    return perf.main(args.perf_args)


def build_parser() -> argparse.ArgumentParser:
    from bench import check, runner

    parser = OneLineParser(prog="python -m bench",
                           description="lnlbench: noisy-label learning benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    runner.add_subcommands(sub)
    p = sub.add_parser("list", help="list datasets, noise models and draws, networks, methods and grids")
    p.set_defaults(func=_cmd_list)
    check.add_subcommand(sub)
    p = sub.add_parser("perf", help="throughput benchmark (see python -m bench.perf --help)")
    p.add_argument("perf_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_perf)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["perf"]:  # forwarded whole: argparse would take --device for itself
        from bench import perf

        return perf.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `python -m bench status GRID | head`
        return quiet_broken_pipe()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP during `run`
        print(str(exc) or "interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
