"""The ``nangua`` command: one front door for everything users run.

Each sub-command lives in its own module under :mod:`nangua.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the function that runs it.
"""

import argparse
import importlib
import sys

#: Sub-command modules, in the order ``nangua --help`` lists them.
COMMANDS = ["demo", "verilog", "bench", "build", "sim"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="nangua",
        description="Open SHA-256d miner and K210-style KPU gateware, with host software.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"nangua.commands.{name}").register(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except ValueError as error:
        # Bad parameters reach the user as one clear line, not a traceback.
        print(f"nangua: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
