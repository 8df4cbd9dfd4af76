"""Where an iCE40 design's logic cells go: a rough attribution to signal names.

A logic cell (ICESTORM_LC) holds one LUT4, one carry and one flip-flop. nextpnr packs a
flip-flop with the LUT driving its input when no other cell uses that LUT's output, and a carry
with the LUT on the same two inputs; every other flip-flop (loaded from a bus, a block RAM or
another flip-flop) and every other carry takes a cell of its own. :func:`logic_cells` applies
those rules to Yosys's netlist (``write_json`` after ``synth_ice40``) and names each cell after
the signal it drives (a LUT that ABC created is named after a net of its output, so the names
are approximate); its total is within a few percent of nextpnr's count.
"""

import collections
import re

__all__ = ["cell_count", "logic_cells"]

#: The part of a net name that names a signal: up to Yosys's ``_SB_`` suffixes, an index or a
#: ``$`` suffix; trailing ``_<n>`` (an Amaranth array element) dropped.
_SUFFIX = re.compile(r"_SB_|\$|\[")


def _signal(name, depth):
    name = _SUFFIX.split(name.lstrip("\\"))[0]
    name = re.sub(r"_\d+$", "", name)
    return ".".join(name.split(".")[:depth])


def logic_cells(netlist, *, top="top", depth=5):
    """``{signal: Counter(kind: cells)}`` for the module ``top`` of a Yosys JSON netlist (a
    dict), with kinds ``"ff+lut"``, ``"ff only"``, ``"lut"``, ``"carry+lut"`` (these take no
    cell of their own) and ``"carry only"``. The cells a signal takes are the sum of its
    kinds but ``"carry+lut"``; ``depth`` keeps that many dot-separated parts of a name."""
    module = netlist["modules"][top]
    cells = module["cells"]
    users = collections.Counter()
    driver = {}
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            direction = cell["port_directions"].get(port)
            for bit in bits:
                if isinstance(bit, int):
                    if direction == "input":
                        users[bit] += 1
                    else:
                        driver[bit] = name
    net_names = {}
    for name, net in module["netnames"].items():
        for bit in net["bits"]:
            if isinstance(bit, int) and (bit not in net_names or len(name) < len(net_names[bit])):
                net_names[bit] = name

    def signal(name, cell):
        if name.startswith("$"):            # an automatic name: take a net it drives
            outputs = [bit for port, bits in cell["connections"].items()
                       if cell["port_directions"].get(port) == "output"
                       for bit in bits if isinstance(bit, int)]
            name = net_names.get(outputs[0], name) if outputs else name
        return _signal(name, depth)

    result = collections.defaultdict(collections.Counter)
    packed = set()                          # LUTs holding a flip-flop
    for name, cell in cells.items():
        if cell["type"].startswith("SB_DFF"):
            d = cell["connections"]["D"][0]
            lut = driver.get(d)
            alone = lut is not None and cells[lut]["type"] == "SB_LUT4" and users[d] == 1
            if alone and lut not in packed:
                packed.add(lut)
                result[signal(name, cell)]["ff+lut"] += 1
            else:
                result[signal(name, cell)]["ff only"] += 1
    by_inputs = {}
    for name, cell in cells.items():
        if cell["type"] == "SB_LUT4":
            if name not in packed:
                result[signal(name, cell)]["lut"] += 1
            key = (tuple(cell["connections"]["I1"]), tuple(cell["connections"]["I2"]))
            by_inputs[key] = name
    shared = set()                          # LUTs holding a carry
    for name, cell in cells.items():
        if cell["type"] == "SB_CARRY":
            lut = by_inputs.get((tuple(cell["connections"]["I0"]),
                                 tuple(cell["connections"]["I1"])))
            if lut is not None and lut not in shared:
                shared.add(lut)
                result[signal(name, cell)]["carry+lut"] += 1
            else:
                result[signal(name, cell)]["carry only"] += 1
    return dict(result)


def cell_count(kinds):
    """The logic cells of one signal's kinds (see :func:`logic_cells`)."""
    return sum(n for kind, n in kinds.items() if kind != "carry+lut")
