"""Host side of the miner's serial link: the native framed protocol and the Icarus protocol.

Constants come from :mod:`nangua.hdl.link.protocol`, the same module the gateware is built from.
"""

from .native import (Done, FrameDecoder, Identity, JobAck, NativeClient, Result,
                     Status, decode_payload, encode_frame, encode_identify_request, encode_job,
                     encode_payload, encode_status_request)
from .icarus import DETECT_NONCE, DETECT_PACKET, decode_nonce, decode_work, encode_work

__all__ = [
    "Done", "FrameDecoder", "Identity", "JobAck", "NativeClient", "Result",
    "Status", "decode_payload", "encode_frame", "encode_identify_request", "encode_job",
    "encode_payload", "encode_status_request",
    "DETECT_NONCE", "DETECT_PACKET", "decode_nonce", "decode_work", "encode_work",
]
