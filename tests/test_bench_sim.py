"""``nangua bench sim``: parameters, and one real (short) measurement in Amaranth's simulator."""

import json

import pytest

from nangua.cli import main


def test_measures_and_writes_a_report(tmp_path, capsys):
    report = tmp_path / "sim.json"
    assert main(["bench", "sim", "--unroll", "1", "--simulators", "amaranth", "--seconds", "0.5",
                 "--report", str(report)]) == 0
    (result,) = json.loads(report.read_text())["results"]
    assert result["simulator"] == "amaranth" and result["unroll"] == 1
    # Unroll 1 hashes one nonce per 64 clocks once the pipeline runs.
    assert result["cycles"] > 64 and 0 < result["hashes"] <= result["cycles"] // 64 + 1
    assert "amaranth        1" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--unroll", "3"], "nangua: error: unknown unroll '3'; choose from 64, 8, 1"),
    (["--simulators", "ghdl"],
     "nangua: error: unknown simulator 'ghdl'; choose from amaranth, icarus, verilator, board"),
    (["--seconds", "0"], "nangua: error: --seconds must be positive, not 0.0"),
])
def test_bad_parameters(args, message, capsys):
    assert main(["bench", "sim", *args]) == 2
    assert capsys.readouterr().err.strip() == message
