"""The ``memrl`` command: train, eval, tune, bench, repro, data."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rich.logging import RichHandler

from memrl.bench import BENCHMARKS


def _bench(argv: list[str]) -> int:
    # No help on this parser: `memrl bench NAME --help` must reach the benchmark's own parser.
    parser = argparse.ArgumentParser(
        prog="memrl bench", description="Run a benchmark.", add_help=False
    )
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    known, rest = parser.parse_known_args(argv)
    module = importlib.import_module(BENCHMARKS[known.name])
    sub = argparse.ArgumentParser(prog=f"memrl bench {known.name}")
    sub.add_argument("--out", default=f"results/{known.name.replace('-', '_')}.json")
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    module.run(args)
    return 0


def _delegate(module_name: str):
    def run(argv: list[str]) -> int:
        return importlib.import_module(module_name).main(argv) or 0

    return run


COMMANDS = {
    "train": _delegate("memrl.train"),
    "eval": _delegate("memrl.evaluate"),
    "tune": _delegate("memrl.tune"),
    "bench": _bench,
    "repro": _delegate("memrl.repro.cli"),
    "data": _delegate("memrl.data_cli"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)]
    )
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: memrl {" + ",".join(COMMANDS) + "} ...", file=sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(
                f"memrl: unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr
            )
            return 2
        return 0
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
