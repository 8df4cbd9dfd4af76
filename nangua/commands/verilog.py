"""``nangua verilog TARGET``: write a block's Verilog."""

import sys
from pathlib import Path

from amaranth.back import verilog

from ..options import add_miner_options, miner_parameters


def build_miner(args):
    from ..hdl.miner.engine import MinerEngine
    return MinerEngine(**miner_parameters(args))


#: Targets: name -> (help, function adding its options, function building the component).
TARGETS = {
    "miner": ("the SHA-256d miner: core, job/nonce engine and result FIFO",
              add_miner_options, build_miner),
}


def register(subparsers):
    parser = subparsers.add_parser("verilog", help="write a block's Verilog",
                                   description="Generate Verilog for one of nangua's blocks.")
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, (help_text, add_options, build) in TARGETS.items():
        target = targets.add_parser(name, help=help_text, description=help_text)
        add_options(target)
        target.add_argument("-o", "--output", default="-",
                            help="output file (default: standard output)")
        target.add_argument("--name", default=f"nangua_{name}", help="top module name")
        target.set_defaults(func=run, build=build)


def run(args):
    component = args.build(args)
    # emit_src=False keeps absolute source paths (and so this machine) out of the output.
    text = verilog.convert(component, name=args.name, emit_src=False)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path} ({len(text.splitlines())} lines, top module {args.name})",
              file=sys.stderr)
