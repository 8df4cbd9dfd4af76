"""Reader for nncase 1.x K210 kmodels (format version 5): the KPU layers they hold.

Pure Python + NumPy. Written from the format as nncase v1.9.0 reads it
(``include/nncase/runtime/model.h``, ``src/runtime/section.cpp``,
``modules/k210/include/nncase/runtime/k210/runtime_types.h``); all integers little-endian.

File
    ``model_header`` (8 × u32: identifier ``KMDL``, version 5, header_size, flags, alignment,
    modules, entry_module, entry_function), then the modules back to back.
Module
    ``module_header`` (type: 16 chars, then 8 × u32: version, header_size, size — including
    the header —, mempools, shared_mempools, sections, functions, reserved), the mempool
    descriptors (8 bytes each), shared mempool descriptors (8 bytes each), the functions, then
    the sections.
Function
    ``function_header`` (8 × u32: header_size, size, input_pool_size, output_pool_size, inputs,
    outputs, entrypoint, text_size), input ``memory_range`` s and shapes, output ranges and
    shapes. Its code is ``text_size`` bytes at ``entrypoint`` in the module's ``.text``.
Section
    ``section_header`` (name: 16 chars, flags, body_start, body_size, reserved); the body
    follows at ``body_start`` after the header unless flag 1 (merged into ``.rdata``) is set,
    when it lies at ``body_start`` inside ``.rdata``.
K210 code
    A sequence of packed option structs, each starting with its opcode byte: 0 ``kpu_upload``
    (44 bytes), 1 ``kpu_download`` (44), 2 ``kpu_conv2d`` (152: four ranges — weights,
    batch-norm, activation, main-memory output —, batches, then the 12 layer words at byte 56),
    3 ``copy`` (76).

``memory_range`` is 12 bytes: location (u8: 0 input, 1 output, 2 rdata, 3 data, 64 KPU RAM),
datatype (u8), shared_module (u16), start (u32), size (u32).
"""

import struct
from dataclasses import dataclass, field

from .descriptor import ACT_TABLE_BYTES, LayerDescriptor

__all__ = ["KmodelError", "MemoryRange", "KpuUpload", "KpuDownload", "KpuConv2d",
           "K210Program", "read_k210_program", "weight_memory"]

_MODEL_HEADER = struct.Struct("<4s7I")
_MODULE_HEADER = struct.Struct("<16s8I")
_FUNCTION_HEADER = struct.Struct("<8I")
_SECTION_HEADER = struct.Struct("<16s3I4x")
_RANGE = struct.Struct("<BBHII")
_SHAPE4 = struct.Struct("<4I")

MEM_INPUT, MEM_OUTPUT, MEM_RDATA, MEM_DATA, MEM_KPU = 0, 1, 2, 3, 64
_SECTION_MERGED_INTO_RDATA = 1
_OP_UPLOAD, _OP_DOWNLOAD, _OP_CONV2D, _OP_COPY = 0, 1, 2, 3
_UPLOAD_BYTES = _DOWNLOAD_BYTES = 44
_CONV2D_BYTES = 152
_COPY_BYTES = 76


class KmodelError(ValueError):
    """The bytes are not a kmodel this reader understands."""


@dataclass(frozen=True)
class MemoryRange:
    location: int
    datatype: int
    start: int
    size: int


@dataclass(frozen=True)
class KpuUpload:
    """Copy of an N×C×H×W uint8 tensor from main memory into KPU RAM (byte ``output.start``)."""
    input: MemoryRange
    output: MemoryRange
    shape: tuple


@dataclass(frozen=True)
class KpuDownload:
    """Copy of an N×C×H×W uint8 map from KPU RAM (byte ``input.start``) to main memory."""
    input: MemoryRange
    output: MemoryRange
    shape: tuple


@dataclass(frozen=True)
class KpuConv2d:
    """One KPU layer with the ranges of its tables, as stored (table addresses left 0)."""
    weights: MemoryRange
    batch_norm: MemoryRange
    activation: MemoryRange
    main_mem_output: MemoryRange
    batches: int
    words: tuple

    @property
    def descriptor(self):
        return LayerDescriptor.from_words(self.words)


@dataclass
class K210Program:
    """The K210 module of a kmodel: its ops in order, and its ``.rdata``."""
    ops: list = field(default_factory=list)
    rdata: bytes = b""

    @property
    def layers(self):
        return [op for op in self.ops if isinstance(op, KpuConv2d)]


def _range(data, offset):
    location, datatype, _, start, size = _RANGE.unpack_from(data, offset)
    return MemoryRange(location, datatype, start, size)


def _sections(data, offset, count):
    headers, bodies = [], {}
    for _ in range(count):
        name, flags, body_start, body_size = _SECTION_HEADER.unpack_from(data, offset)
        offset += _SECTION_HEADER.size
        name = name.rstrip(b"\0").decode()
        headers.append((name, flags, body_start, body_size))
        if not flags & _SECTION_MERGED_INTO_RDATA:
            bodies[name] = data[offset + body_start:offset + body_start + body_size]
            offset += body_start + body_size
    for name, flags, body_start, body_size in headers:
        if flags & _SECTION_MERGED_INTO_RDATA:
            bodies[name] = bodies[".rdata"][body_start:body_start + body_size]
    return bodies


def _decode_ops(text):
    ops, offset = [], 0
    while offset < len(text):
        opcode = text[offset]
        if opcode in (_OP_UPLOAD, _OP_DOWNLOAD):
            kind = KpuUpload if opcode == _OP_UPLOAD else KpuDownload
            ops.append(kind(_range(text, offset + 4), _range(text, offset + 16),
                            _SHAPE4.unpack_from(text, offset + 28)))
            offset += _UPLOAD_BYTES
        elif opcode == _OP_CONV2D:
            ranges = [_range(text, offset + 4 + 12 * i) for i in range(4)]
            (batches,) = struct.unpack_from("<I", text, offset + 52)
            words = struct.unpack_from("<12Q", text, offset + 56)
            ops.append(KpuConv2d(*ranges, batches, words))
            offset += _CONV2D_BYTES
        elif opcode == _OP_COPY:
            ops.append(("copy", bytes(text[offset:offset + _COPY_BYTES])))
            offset += _COPY_BYTES
        else:
            raise KmodelError(f"Unknown K210 opcode {opcode} at text offset {offset}")
    return ops


def read_k210_program(kmodel):
    """Parse ``kmodel`` bytes and return the :class:`K210Program` of its (single) K210 module.

    Raises
    ------
    KmodelError
        On a wrong identifier or version, no or several K210 modules, or unknown K210 code.
    """
    data = memoryview(bytes(kmodel))
    identifier, version, _, _, _, modules, _, _ = _MODEL_HEADER.unpack_from(data, 0)
    if identifier != b"LDMK" or version != 5:
        raise KmodelError(f"Not a version 5 kmodel (identifier {bytes(identifier)!r}, "
                          f"version {version})")
    offset = _MODEL_HEADER.size
    programs = []
    for _ in range(modules):
        (kind, _, _, size, mempools, shared, sections,
         functions, _) = _MODULE_HEADER.unpack_from(data, offset)
        module = data[offset:offset + size]
        offset += size
        if kind.rstrip(b"\0") != b"k210":
            continue
        cursor = _MODULE_HEADER.size + 8 * (mempools + shared)
        entries = []
        for _ in range(functions):
            header = _FUNCTION_HEADER.unpack_from(module, cursor)
            entries.append((header[6], header[7]))
            cursor += header[1]
        bodies = _sections(module, cursor, sections)
        text = bodies.get(".text", b"")
        program = K210Program(rdata=bytes(bodies.get(".rdata", b"")))
        for entry, text_size in entries:
            program.ops.extend(_decode_ops(bytes(text[entry:entry + text_size])))
        programs.append(program)
    if len(programs) != 1:
        raise KmodelError(f"Expected one K210 module, found {len(programs)}")
    return programs[0]


def weight_memory(program, alignment=256):
    """Lay the program's weights and tables out in one weight memory.

    Returns ``(memory, descriptors)``: a bytearray holding, for each layer in order, its weights,
    batch-norm table and activation table, each starting at a multiple of ``alignment`` bytes
    (the K210 runtime wants the activation table 256-byte aligned); and the layers' descriptors
    with ``para_start_addr``, ``bwsx_base_addr`` and ``active_addr`` pointing there (nncase
    fills them in only on the chip).

    Raises
    ------
    KmodelError
        If a table is not in ``.rdata``.
    """
    memory = bytearray()
    descriptors = []
    for layer in program.layers:
        addresses = []
        for table in (layer.weights, layer.batch_norm, layer.activation):
            if table.location != MEM_RDATA:
                raise KmodelError(f"Layer table in memory location {table.location}, not rdata")
            memory += bytes(-len(memory) % alignment)
            addresses.append(len(memory))
            memory += program.rdata[table.start:table.start + table.size]
        if layer.activation.size < ACT_TABLE_BYTES:
            raise KmodelError(f"Activation table of {layer.activation.size} bytes")
        descriptors.append(layer.descriptor.replace(
            para_start_addr=addresses[0], bwsx_base_addr=addresses[1], active_addr=addresses[2]))
    return memory, descriptors
