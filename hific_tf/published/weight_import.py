"""Imports a published model's weights into this project's Keras HiFiC, by structure.

The published graphs hold every weight as an unnamed constant, or as a small constant
subgraph (h_a's RDFT parameterisation reshape(matmul(irdft, kernel_rdft)), the transposes and
flips of h_s's kernels), so the networks are found from the data flow, never from node names,
and every weight is the value of the constant subgraph that feeds it, evaluated once:

- the sender has two range encoders; z's symbols depend on fewer convolutions than y's;
- E and h_a are the convolutions on the path from the image to z's symbols, and E ends at
  the convolution whose output reaches y's symbols with no convolution in between (y);
- the receiver has two range decoders; z's depends on fewer convolutions. h_s_scale is what
  feeds y's decoder its indexes, h_s_mean the other convolutions after z's decoder and
  before y's, and G everything after y's decoder.

`GraphWalker` indexes a graph for this: it walks version-1 while loops (ignoring their
NextIteration -> Merge back edges when ordering) and looks into control-flow-v2 functions
(the bodies of While ops are inlined for walking, their arguments joined to the While's
inputs), follows TensorArray / TensorList elements back to the batched tensors that map_fn
splits, and evaluates constant subgraphs.

Within a network, convolutions are ordered by the data flow; each one's kernel is what feeds
its Conv2D (Conv2DBackpropInput when transposed), its bias the constant added right after,
and its padding is compared with the Keras layer's. A ChannelNorm is recognised in either op
pattern: tf.nn.batch_normalization's (x * (rsqrt(var + eps) * gamma) + (beta - mean * ...))
or gamma * ((x - mean) * rsqrt(var + eps)) + beta.

The coding side is read from the graph too: z's medians (from the ops that quantise z), both
coders' CDF tables, lengths and offsets, their precision and overflow width, and the scale
index rule, which is checked by running the graph's index computation on probe scales.

The architecture is read off the graph, compared with the expected one where one is given,
and every difference is refused with one line naming it (`StructureError`).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from hific_tf.coding.model import HiFiC
from hific_tf.configs import ModelConfig
from hific_tf.errors import UserError
from hific_tf.nn.layers import (
    ChannelNorm,
    ZeroPaddedConv2D,
    ZeroPaddedConv2DTranspose,
    zero_padding,
)
from hific_tf.published import graph_safety, runner
from hific_tf.published.converted import CoderTables, GraphCoding
from hific_tf.published.runner import RECEIVER, SENDER, read_metagraph

# Convolution ops: (data input, kernel input).
_CONVOLUTIONS = {"Conv2D": (0, 1), "Conv2DBackpropInput": (2, 1)}
_ENCODERS = {"UnboundedIndexRangeEncode"}
_DECODERS = {"UnboundedIndexRangeDecode"}
_PASS_THROUGH = {"Identity", "Snapshot", "StopGradient", "Enter"}
_ADDS = {"Add", "AddV2", "BiasAdd"}
_WHILES = {"While", "StatelessWhile"}
# Where a search for a layer's bias or norm stops: the next layer begins there.
_LAYER_BOUNDARIES = {*_CONVOLUTIONS, "Relu", "LeakyRelu", *_ENCODERS, *_DECODERS}
_NORM_MAX_OPS = 12  # a ChannelNorm is about ten ops


class StructureError(UserError):
    """The graph is not HiFiC of the expected architecture."""


@dataclasses.dataclass
class _Node:
    name: str
    op: str
    inputs: list[str]  # data inputs as "node:output" (control inputs left out)
    attr: object  # the NodeDef's attr map


def _reference(text: str) -> str:
    """A GraphDef input ("node", "node:1") as "node:output"."""
    name, _, output = text.partition(":")
    return f"{name}:{output or 0}"


class GraphWalker:
    """A frozen graph indexed for walking its data flow both ways and folding constants."""

    def __init__(self, meta_graph: tf.compat.v1.MetaGraphDef) -> None:
        self.meta_graph = meta_graph
        graph_def = meta_graph.graph_def
        self.functions = {function.signature.name: function
                          for function in graph_def.library.function}
        self.nodes: dict[str, _Node] = {}
        for node in graph_def.node:
            self.nodes[node.name] = _Node(node.name, node.op,
                                          [_reference(text) for text in node.input
                                           if not text.startswith("^")], node.attr)
        for node in list(self.nodes.values()):
            if node.op in _WHILES:
                self._inline(node, node.attr["body"].func.name, f"{node.name}/body/")
        self.consumers: dict[str, list[str]] = collections.defaultdict(list)
        for node in self.nodes.values():
            for name in self.inputs(node.name):
                self.consumers[name].append(node.name)
        self.order = self._topological_order()
        placeholders = [name for name, node in self.nodes.items() if node.op == "Placeholder"]
        self.variable = self.walk(placeholders, forward=True)
        self._values: dict[str, np.ndarray] = {}
        self._imported: tf.types.experimental.ConcreteFunction | None = None

    def _inline(self, caller: _Node, function_name: str, prefix: str) -> None:
        """Adds the body of `caller`'s function as nodes named `prefix` + name, its
        arguments joined to the caller's inputs and its results feeding the caller."""
        function = self.functions.get(function_name)
        if function is None:
            raise StructureError(f"the graph calls the function {function_name}, which its "
                                 "library does not hold")
        arguments = {arg.name: caller.inputs[position] if position < len(caller.inputs)
                     else None for position, arg in enumerate(function.signature.input_arg)}

        def resolve(text: str) -> str | None:
            name, *rest = text.split(":")
            if name in arguments and not rest:
                return arguments[name]
            return f"{prefix}{name}:{rest[-1] if len(rest) == 2 else 0}"

        for node in function.node_def:
            inputs = [resolve(text) for text in node.input if not text.startswith("^")]
            inlined = _Node(prefix + node.name, node.op,
                            [text for text in inputs if text is not None], node.attr)
            self.nodes[inlined.name] = inlined
            if node.op in _WHILES:
                self._inline(inlined, node.attr["body"].func.name, f"{inlined.name}/body/")
        results = [resolve(text) for text in function.ret.values()]
        caller.inputs = caller.inputs + [text for text in results if text is not None]

    def inputs(self, name: str) -> list[str]:
        """Names of the nodes whose outputs feed `name`."""
        return [text.rsplit(":", 1)[0] for text in self.nodes[name].inputs
                if text.rsplit(":", 1)[0] in self.nodes]

    def input(self, name: str, position: int) -> str:
        """The tensor ("node:output") at data input `position` of node `name`."""
        return self.nodes[name].inputs[position]

    def op(self, name: str) -> str:
        return self.nodes[name].op

    def _topological_order(self) -> dict[str, int]:
        """A data-flow order; loops' back edges (NextIteration -> Merge) are left out."""
        def forward_inputs(name: str) -> list[str]:
            return [source for source in self.inputs(name)
                    if self.op(source) != "NextIteration"]

        pending = {name: len(forward_inputs(name)) for name in self.nodes}
        ready = collections.deque(name for name, count in pending.items() if count == 0)
        order: dict[str, int] = {}
        while ready:
            name = ready.popleft()
            order[name] = len(order)
            for consumer in self.consumers[name]:
                if self.op(name) == "NextIteration":
                    continue
                pending[consumer] -= 1
                if pending[consumer] == 0:
                    ready.append(consumer)
        return order

    def walk(self, starts: Iterable[str], forward: bool,
             stop: Callable[[str], bool] = lambda name: False) -> set[str]:
        """Every node reached from `starts` (included); `stop` nodes are not walked past."""
        starts = set(starts)
        seen = set(starts)
        queue = collections.deque(seen)
        while queue:
            name = queue.popleft()
            if stop(name) and name not in starts:
                continue
            for neighbour in (self.consumers[name] if forward else self.inputs(name)):
                if neighbour not in seen:
                    seen.add(neighbour)
                    queue.append(neighbour)
        return seen

    def resolve(self, tensor: str) -> str:
        """`tensor` with identities and loop entries looked through."""
        name = tensor.rsplit(":", 1)[0]
        while self.op(name) in _PASS_THROUGH:
            tensor = self.nodes[name].inputs[0]
            name = tensor.rsplit(":", 1)[0]
        return tensor

    def element_source(self, tensor: str) -> str:
        """For an element that map_fn reads inside its loop (v1: TensorArrayReadV3, v2:
        TensorListGetItem), the batched tensor it was split from; else `tensor` resolved."""
        tensor = self.resolve(tensor)
        name = tensor.rsplit(":", 1)[0]
        if self.op(name) == "TensorArrayReadV3":
            array = self.resolve(self.input(name, 0)).rsplit(":", 1)[0]
            for consumer in self.consumers[array]:
                if self.op(consumer) == "TensorArrayScatterV3":
                    return self.resolve(self.input(consumer, 2))
        if self.op(name) == "TensorListGetItem":
            source = self.resolve(self.input(name, 0)).rsplit(":", 1)[0]
            if self.op(source) == "TensorListFromTensor":
                return self.resolve(self.input(source, 0))
        return tensor

    def is_constant(self, tensor: str) -> bool:
        """Whether `tensor` depends on no signature input (so it can be evaluated)."""
        return tensor.rsplit(":", 1)[0] not in self.variable

    def convolutions(self, names: Iterable[str]) -> list[str]:
        """The convolutions among `names`, in data-flow order."""
        return sorted((name for name in names if self.op(name) in _CONVOLUTIONS),
                      key=self.order.__getitem__)

    def constant_operand(self, name: str) -> tuple[str, str] | None:
        """(constant input, other input) of a two-input op with one constant input."""
        node = self.nodes[name]
        if len(node.inputs) != 2:
            return None
        for position in (0, 1):
            if self.is_constant(node.inputs[position]) and not self.is_constant(
                    node.inputs[1 - position]):
                return node.inputs[position], node.inputs[1 - position]
        return None

    def _function(self) -> tf.types.experimental.ConcreteFunction:
        if self._imported is None:
            import tensorflow_compression  # noqa: F401  Registers the range-coding ops.

            self._imported = tf.compat.v1.wrap_function(
                lambda: tf.compat.v1.train.import_meta_graph(self.meta_graph), [])
        return self._imported

    def evaluate(self, tensors: Iterable[str]) -> None:
        """Folds the constant `tensors` (evaluating their subgraphs once, together)."""
        missing = []
        for tensor in dict.fromkeys(tensors):
            if tensor in self._values:
                continue
            name = tensor.rsplit(":", 1)[0]
            if self.op(name) == "Const":
                self._values[tensor] = tf.make_ndarray(self.nodes[name].attr["value"].tensor)
            else:
                missing.append(tensor)
        if not missing:
            return
        if any("/body/" in tensor for tensor in missing):
            raise StructureError("a weight of the graph is computed inside a loop; the "
                                 "importer folds only constants outside loops")
        function = self._function()
        try:
            fetched = function.prune(
                [], [function.graph.get_tensor_by_name(tensor) for tensor in missing])()
        except (KeyError, ValueError, tf.errors.OpError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise StructureError(f"cannot evaluate the graph's constant subgraphs "
                                 f"({first[:160]})") from None
        self._values.update(zip(missing, (value.numpy() for value in fetched), strict=True))

    def value(self, tensor: str) -> np.ndarray:
        """The folded value of a constant tensor (`evaluate` it first to batch the work)."""
        self.evaluate([tensor])
        return self._values[tensor]

    def run(self, feeds: dict[str, np.ndarray], fetch: str) -> np.ndarray:
        """Evaluates `fetch` with the graph tensors `feeds` replaced by the given values."""
        function = self._function()
        graph = function.graph
        names = list(feeds)
        pruned = function.prune([graph.get_tensor_by_name(name) for name in names],
                                graph.get_tensor_by_name(fetch))
        return pruned(*(tf.constant(feeds[name]) for name in names)).numpy()


@dataclasses.dataclass
class GraphLayer:
    """One convolution found in the graph, with its bias and the ChannelNorm after it."""

    node: str
    kernel: np.ndarray
    bias: np.ndarray
    transposed: bool
    stride: int
    padding: str  # "same", "zeros (before, after)" or the op's own description
    norm: tuple[np.ndarray, np.ndarray] | None  # (gamma, beta)
    output: str  # the tensor after the bias

    def describe(self) -> str:
        height, width, *channels = self.kernel.shape
        inputs, outputs = reversed(channels) if self.transposed else channels
        kind = "transposed conv" if self.transposed else "conv"
        norm = " + ChannelNorm" if self.norm is not None else ""
        return (f"{kind} {height}x{width} {inputs}->{outputs} stride {self.stride} "
                f"padding {self.padding}{norm}")


@dataclasses.dataclass
class GraphNetworks:
    """What the graph holds, network by network, plus its coding tables."""

    encoder: list[GraphLayer]
    analysis: list[GraphLayer]
    synthesis_mean: list[GraphLayer]
    synthesis_scale: list[GraphLayer]
    generator: list[GraphLayer]
    generator_input_norm: tuple[np.ndarray, np.ndarray] | None
    coding: GraphCoding

    def infer_config(self) -> dict[str, object]:
        """The ModelConfig fields that the graph determines."""
        upsampling = [layer for layer in self.generator if layer.transposed]
        return {
            "encoder_channels": tuple(layer.kernel.shape[-1] for layer in self.encoder[:-1]),
            "latent_channels": self.encoder[-1].kernel.shape[-1] if self.encoder else 0,
            "hyper_channels": self.analysis[0].kernel.shape[-1] if self.analysis else 0,
            "residual_blocks": max(len(self.generator) - len(upsampling) - 2, 0) // 2,
            "num_scales": int(self.coding.y.cdf.shape[0]),
            # The only normalization whose op patterns the tracer recognises (_norm_ending_at).
            "normalization": "channel",
        }


@dataclasses.dataclass
class _NormRefs:
    gamma: str
    beta: str
    input: str  # the normalised tensor


def _norm_ending_at(graph: GraphWalker, name: str) -> _NormRefs | None:
    """The ChannelNorm whose last op is `name`, in either op pattern, if it is one."""
    if graph.op(name) not in ("Add", "AddV2"):
        return None
    node = graph.nodes[name]
    # tf.nn.batch_normalization: x * g + (beta - mean * g), g = rsqrt(var + eps) * gamma.
    for scaled, shift in (node.inputs, reversed(node.inputs)):
        scaled, shift = scaled.rsplit(":", 1)[0], shift.rsplit(":", 1)[0]
        if graph.op(scaled) != "Mul" or graph.op(shift) != "Sub":
            continue
        operands = graph.nodes[scaled].inputs
        for x, factor in (operands, reversed(operands)):
            factor_name = factor.rsplit(":", 1)[0]
            if graph.op(factor_name) != "Mul":
                continue
            parts = graph.nodes[factor_name].inputs
            rsqrt = [part for part in parts if graph.op(part.rsplit(":", 1)[0]) == "Rsqrt"]
            gamma = [part for part in parts if graph.is_constant(part)]
            beta = graph.nodes[shift].inputs[0]
            if len(rsqrt) == 1 and len(gamma) == 1 and graph.is_constant(beta):
                return _NormRefs(gamma[0], beta, x)
    # gamma * ((x - mean) * rsqrt(var + eps)) + beta.
    shift = graph.constant_operand(name)
    if shift is None or graph.op(shift[1].rsplit(":", 1)[0]) != "Mul":
        return None
    scale = graph.constant_operand(shift[1].rsplit(":", 1)[0])
    if scale is None:
        return None
    normalised = scale[1].rsplit(":", 1)[0]
    if graph.op(normalised) != "Mul":
        return None
    parts = [part.rsplit(":", 1)[0] for part in graph.nodes[normalised].inputs]
    centred = [part for part in parts if graph.op(part) == "Sub"]
    if len(centred) != 1 or not any(graph.op(part) == "Rsqrt" for part in parts):
        return None
    return _NormRefs(scale[0], shift[0], graph.nodes[centred[0]].inputs[0])


def _norm_after(graph: GraphWalker, tensor: str, where: str) -> _NormRefs | None:
    """The ChannelNorm that normalises `tensor`, if one does (a channel Mean reads it)."""
    name = tensor.rsplit(":", 1)[0]
    if not any(graph.op(consumer) == "Mean" for consumer in graph.consumers[name]):
        return None
    frontier, seen = [name], {name}
    for _ in range(_NORM_MAX_OPS):
        following = []
        for node in frontier:
            for consumer in graph.consumers[node]:
                if consumer in seen or graph.op(consumer) in _LAYER_BOUNDARIES:
                    continue
                found = _norm_ending_at(graph, consumer)
                if found is not None and graph.resolve(found.input) == tensor:
                    return found
                seen.add(consumer)
                following.append(consumer)
        frontier = following
    raise StructureError(f"{where} is normalised over its channels (a Mean reads it) in an op "
                         "pattern the importer does not know; it knows ChannelNorm as "
                         "tf.nn.batch_normalization builds it and as "
                         "gamma * (x - mean) * rsqrt(var + eps) + beta")


def _padding(graph: GraphWalker, name: str, size: int, stride: int) -> str:
    """The convolution's padding, canonical: "same", "zeros (b, a)" or the op's own words."""
    node = graph.nodes[name]
    padding = node.attr["padding"].s.decode()
    if padding == "SAME":
        return "same"
    if padding == "EXPLICIT":
        pads = list(node.attr["explicit_paddings"].list.i)
        rows, columns = tuple(pads[2:4]), tuple(pads[4:6])
        if rows == columns == zero_padding(size):
            return "same" if stride == 1 and size % 2 else f"zeros {rows}"
        return f"explicit {rows} x {columns}"
    return padding.lower()


@dataclasses.dataclass
class _LayerRefs:
    node: str
    kernel: str
    bias: str
    output: str
    norm: _NormRefs | None


def _layer_refs(graph: GraphWalker, name: str, where: str) -> _LayerRefs:
    """Where the kernel, bias and following norm of the convolution `name` come from."""
    kernel = graph.input(name, _CONVOLUTIONS[graph.op(name)][1])
    if not graph.is_constant(kernel):
        raise StructureError(f"the kernel of {where} depends on the image; the graph is not a "
                             "frozen model")
    for consumer in graph.consumers[name]:
        if graph.op(consumer) in _ADDS:
            found = graph.constant_operand(consumer)
            if found is not None:
                output = f"{consumer}:0"
                return _LayerRefs(name, kernel, found[0], output,
                                  _norm_after(graph, output, where))
    raise StructureError(f"{where} has no bias; every HiFiC convolution has one")


def _two(graph: GraphWalker, names: Iterable[str], ops: set[str], side: str) -> list[str]:
    """The two range coders (z's first) of one side, ordered by how many convolutions
    they depend on."""
    coders = [name for name in names if graph.op(name) in ops]
    if len(coders) != 2:
        raise StructureError(f"the {side} has {len(coders)} range coders, HiFiC has two "
                             "(z and y)")
    return sorted(coders, key=lambda name: len(graph.convolutions(
        graph.walk([name], forward=False))))


def _z_medians(graph: GraphWalker, encoder: str, z: str
               ) -> tuple[list[tuple[str, float]], float]:
    """The constants added to z before rounding (tensor, sign), and the centre c such that
    the medians are c - (their signed sum).

    z's symbols are rounding(z + a) for a sum a of constants: floor(z + a) quantises around
    the medians 0.5 - a, round(z + a) around -a.
    """
    symbols = graph.element_source(graph.input(encoder, 0))
    terms: list[tuple[str, float]] = []
    rounding = None
    name = symbols.rsplit(":", 1)[0]
    seen_ops = []
    while graph.resolve(f"{name}:0") != z:
        op = graph.op(name)
        seen_ops.append(op)
        if op == "Cast" or op in _PASS_THROUGH:
            name = graph.input(name, 0).rsplit(":", 1)[0]
        elif op in ("Floor", "Round") and rounding is None:
            rounding = op
            name = graph.input(name, 0).rsplit(":", 1)[0]
        elif op in ("Add", "AddV2", "Sub") and graph.constant_operand(name) is not None:
            constant, other = graph.constant_operand(name)
            if op == "Sub" and graph.input(name, 0) == constant:
                break
            terms.append((constant, -1.0 if op == "Sub" else 1.0))
            name = other.rsplit(":", 1)[0]
        else:
            break
    else:
        if rounding is not None:
            # floor(z + a) = floor(z - (0.5 - a) + 0.5); round(z + a) = round(z - (-a)).
            return terms, 0.5 if rounding == "Floor" else 0.0
    raise StructureError(f"z is quantised by ops the importer does not know "
                         f"({' -> '.join(seen_ops)}); it knows floor(z + (0.5 - median)) and "
                         "round(z - offset)")


def _coder_refs(graph: GraphWalker, coder: str) -> list[str]:
    refs = [graph.resolve(graph.input(coder, position)) for position in (2, 3, 4)]
    for ref in refs:
        if not graph.is_constant(ref):
            raise StructureError(f"the range coder {coder}'s tables depend on the image")
    return refs


def _settings(graph: GraphWalker, coders: list[str]) -> tuple[int, int]:
    settings = {(graph.nodes[name].attr["precision"].i,
                 graph.nodes[name].attr["overflow_width"].i) for name in coders}
    if len(settings) != 1:
        raise StructureError(f"the graph's range coders use different settings "
                             f"(precision, overflow width): {sorted(settings)}")
    return settings.pop()


def _check_index_rule(graph: GraphWalker, scale_output: str, coder: str,
                      scale_table: list[float]) -> None:
    """Runs the graph's scale-index computation on probe scales: each must get the index of
    the next greater or equal entry of `scale_table` (the authors' rule), scales below the
    first entry index 0 and above the last the last index."""
    index = graph.element_source(graph.input(coder, 1))
    fed = scale_output
    region = graph.walk([index.rsplit(":", 1)[0]], forward=False)
    for consumer in graph.consumers[scale_output.rsplit(":", 1)[0]]:
        if consumer in region and graph.op(consumer) == "StridedSlice":
            fed = f"{consumer}:0"  # the crop to y's size
    table = np.array(scale_table, np.float32)
    middles = np.sqrt(table[1:] * table[:-1])
    probes = np.concatenate([table, middles, table[1:] * 0.999, [table[0] / 2, table[-1] * 2]])
    expected = np.minimum(np.searchsorted(table[:-1], probes, side="left"), len(table) - 1)
    try:
        got = graph.run({fed: probes.reshape(1, 1, -1, 1).astype(np.float32)}, index)
    except (KeyError, ValueError, tf.errors.OpError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise StructureError(f"cannot run the graph's scale-index computation on probe scales "
                             f"({first[:160]})") from None
    got = np.asarray(got).reshape(-1)
    if got.shape != expected.shape or np.any(got != expected):
        wrong = int(np.argmax(got != expected)) if got.shape == expected.shape else 0
        raise StructureError(
            f"the graph's scale indexes differ from the next-greater-entry rule over the "
            f"scale table exp(linspace(ln {scale_table[0]:g}, ln {scale_table[-1]:g}, "
            f"{len(scale_table)})): scale {probes[wrong]:.6g} gets index "
            f"{got.reshape(-1)[wrong] if got.size else 'none'}, the rule gives {expected[wrong]}")


_NETWORK_LABELS = {"encoder": "E", "analysis": "h_a", "synthesis_mean": "h_s (means)",
                   "synthesis_scale": "h_s (scales)", "generator": "G"}


def trace_networks(meta_graph: tf.compat.v1.MetaGraphDef,
                   scale_table: list[float] | None = None) -> GraphNetworks:
    """Finds E, h_a, the two h_s, G and the coding tables in a published graph.

    `scale_table` (default: ModelConfig's, of the graph's number of scales) is the table the
    graph's scale indexes are checked against.
    """
    for key in (SENDER, RECEIVER):
        if key not in meta_graph.signature_def:
            raise StructureError(f"the graph has no {key!r} signature")
    graph = GraphWalker(meta_graph)
    sender = meta_graph.signature_def[SENDER]
    receiver = meta_graph.signature_def[RECEIVER]
    images = [info.name.split(":")[0] for info in sender.inputs.values()]
    sent = graph.walk(images, forward=True) & graph.walk(
        [info.name.split(":")[0] for info in sender.outputs.values()], forward=False)
    z_encoder, y_encoder = _two(graph, sent, _ENCODERS, "sender")

    def nearest_convolutions(name: str) -> set[str]:
        reached = graph.walk([name], forward=False,
                             stop=lambda node: graph.op(node) in _CONVOLUTIONS)
        return set(graph.convolutions(reached)) - {name}

    to_z = graph.convolutions(graph.walk([z_encoder], forward=False) & sent)
    y_sources = [name for name in to_z if name in nearest_convolutions(y_encoder)]
    if len(y_sources) != 1:
        raise StructureError("no single convolution produces the coded latent y")
    split = to_z.index(y_sources[0]) + 1
    groups = {"encoder": to_z[:split], "analysis": to_z[split:]}

    outputs = [info.name.split(":")[0] for info in receiver.outputs.values()]
    received = graph.walk(outputs, forward=False)
    z_decoder, y_decoder = _two(graph, received, _DECODERS, "receiver")
    after_z = graph.walk([z_decoder], forward=True) & received
    after_y = graph.walk([y_decoder], forward=True) & received
    index_region = graph.walk([graph.resolve(graph.input(y_decoder, 1)).rsplit(":", 1)[0]],
                              forward=False)
    groups["synthesis_scale"] = graph.convolutions(index_region & after_z)
    groups["synthesis_mean"] = [name for name in graph.convolutions(after_z - after_y)
                                if name not in groups["synthesis_scale"]]
    groups["generator"] = graph.convolutions(after_y)
    if not groups["generator"]:
        raise StructureError("the receiver has no convolutions after y's decoder (no G)")

    refs = {network: [_layer_refs(graph, name, f"{_NETWORK_LABELS[network]} layer {n}")
                      for n, name in enumerate(names, start=1)]
            for network, names in groups.items()}
    first = groups["generator"][0]
    input_norm = _norm_ending_at(graph, graph.input(first, _CONVOLUTIONS[graph.op(first)][0])
                                 .rsplit(":", 1)[0])
    z_output = refs["analysis"][-1].output if refs["analysis"] else ""
    median_terms, median_centre = _z_medians(graph, z_encoder, z_output)
    coders = {"z": _coder_refs(graph, z_encoder), "y": _coder_refs(graph, y_encoder)}

    wanted = [ref for layers in refs.values() for layer in layers
              for ref in (layer.kernel, layer.bias,
                          *((layer.norm.gamma, layer.norm.beta) if layer.norm else ()))]
    if input_norm is not None:
        wanted += [input_norm.gamma, input_norm.beta]
    wanted += [tensor for tensor, _ in median_terms] + coders["z"] + coders["y"]
    graph.evaluate(wanted)

    def build(network: str, layer: _LayerRefs, position: int) -> GraphLayer:
        kernel = graph.value(layer.kernel)
        transposed = graph.op(layer.node) == "Conv2DBackpropInput"
        where = f"{_NETWORK_LABELS[network]} layer {position}"
        if kernel.ndim != 4:
            raise StructureError(f"the kernel of {where} has shape {list(kernel.shape)}, "
                                 "not [k, k, in, out]")
        channels = kernel.shape[2] if transposed else kernel.shape[3]
        bias = graph.value(layer.bias)
        norm = None
        if layer.norm is not None:
            norm = (graph.value(layer.norm.gamma), graph.value(layer.norm.beta))
        for label, value in (("bias", bias), *((("ChannelNorm gamma", norm[0]),
                                                ("ChannelNorm beta", norm[1])) if norm else ())):
            if value.shape != (channels,):
                raise StructureError(f"the {label} of {where} has shape {list(value.shape)} "
                                     f"for {channels} channels")
        strides = list(graph.nodes[layer.node].attr["strides"].list.i)
        stride = strides[1] if strides else 1
        return GraphLayer(node=layer.node, kernel=kernel, bias=bias, transposed=transposed,
                          stride=stride, padding=_padding(graph, layer.node,
                                                          kernel.shape[0], stride),
                          norm=norm, output=layer.output)

    layers = {network: [build(network, layer, n) for n, layer in enumerate(found, start=1)]
              for network, found in refs.items()}
    precision, overflow = _settings(graph, [z_encoder, y_encoder, z_decoder, y_decoder])
    tables = {key: CoderTables(*(graph.value(ref).astype(np.int32) for ref in found))
              for key, found in coders.items()}
    z_channels = layers["analysis"][-1].kernel.shape[-1] if layers["analysis"] else 0
    for key, table in tables.items():
        rows = table.cdf.shape[:1]
        if table.cdf.ndim != 2 or not table.cdf_length.shape == table.offset.shape == rows:
            raise StructureError(f"{key}'s range-coding tables have shapes "
                                 f"{[list(value.shape) for value in dataclasses.astuple(table)]}"
                                 ", not [rows, width], [rows], [rows]")
    if tables["z"].cdf.shape[0] != z_channels:
        raise StructureError(f"z's range coder has {tables['z'].cdf.shape[0]} CDFs for "
                             f"{z_channels} channels of z")
    medians = median_centre - sum((sign * graph.value(tensor) for tensor, sign in median_terms),
                                  np.zeros([], np.float32))
    medians = np.broadcast_to(np.asarray(medians, np.float32).reshape(-1),
                              [z_channels]).astype(np.float32)
    if scale_table is None:
        scale_table = dataclasses.replace(
            ModelConfig(), num_scales=int(tables["y"].cdf.shape[0])).scale_table()
    _check_index_rule(graph, layers["synthesis_scale"][-1].output, y_decoder, scale_table)
    return GraphNetworks(
        **layers,
        generator_input_norm=None if input_norm is None else (
            graph.value(input_norm.gamma), graph.value(input_norm.beta)),
        coding=GraphCoding(z=tables["z"], y=tables["y"], z_medians=medians,
                           precision=int(precision), overflow_width=int(overflow)))


def _keras_layers(model: HiFiC) -> dict[str, list[tuple[tf.keras.layers.Layer, object]]]:
    """Each network's convolutions with the ChannelNorm that follows them (or None)."""
    def pairs(layers: list[tf.keras.layers.Layer]) -> list[tuple[tf.keras.layers.Layer,
                                                                  object]]:
        found = []
        for position, layer in enumerate(layers):
            if isinstance(layer, tf.keras.layers.Conv2D):
                following = layers[position + 1] if position + 1 < len(layers) else None
                found.append((layer, following if isinstance(following, ChannelNorm)
                              else None))
        return found

    generator = model.generator
    blocks = [layer for block in generator.residual_blocks
              for layer in (block.conv_a, block.norm_a, block.conv_b, block.norm_b)]
    return {
        "encoder": pairs(model.encoder.layers),
        "analysis": pairs(model.hyperprior.analysis.layers),
        "synthesis_mean": pairs(model.hyperprior.synthesis_mean.layers),
        "synthesis_scale": pairs(model.hyperprior.synthesis_scale.layers),
        "generator": pairs(generator.head.layers[1:] + blocks + generator.tail.layers),
    }


def _keras_padding(layer: tf.keras.layers.Conv2D) -> str:
    size, stride = layer.kernel_size[0], layer.strides[0]
    if isinstance(layer, ZeroPaddedConv2D | ZeroPaddedConv2DTranspose):
        return "same" if stride == 1 and size % 2 else f"zeros {zero_padding(size)}"
    return layer.padding


def _describe_keras(layer: tf.keras.layers.Conv2D, norm: object) -> str:
    height, width = layer.kernel_size
    transposed = isinstance(layer, tf.keras.layers.Conv2DTranspose)
    kernel = layer.kernel.shape
    inputs, outputs = (kernel[3], kernel[2]) if transposed else (kernel[2], kernel[3])
    kind = "transposed conv" if transposed else "conv"
    return (f"{kind} {height}x{width} {inputs}->{outputs} stride {layer.strides[0]} "
            f"padding {_keras_padding(layer)}{' + ChannelNorm' if norm is not None else ''}")


def _differs(expected_name: str) -> str:
    return f"the graph's structure differs from the {expected_name} architecture: "


def check_config(networks: GraphNetworks, expected: ModelConfig, expected_name: str) -> None:
    """Refuses a graph whose widths, block counts or number of scales differ."""
    for field, value in networks.infer_config().items():
        wanted = getattr(expected, field)
        if value != wanted:
            raise StructureError(f"{_differs(expected_name)}{field} is {value} in the graph, "
                                 f"{wanted} in {expected_name}")


def graph_config(networks: GraphNetworks) -> ModelConfig:
    """The ModelConfig of the graph's architecture (the paper's for what it does not fix)."""
    return dataclasses.replace(ModelConfig(), **networks.infer_config())


def import_networks(networks: GraphNetworks, model: HiFiC, expected_name: str) -> None:
    """Copies the graph's weights into `model`, refusing any structural difference."""
    model.build_weights()
    keras = _keras_layers(model)
    for network, layers in keras.items():
        found: list[GraphLayer] = getattr(networks, network)
        label = _NETWORK_LABELS[network]
        if len(found) != len(layers):
            raise StructureError(f"{_differs(expected_name)}{label} has {len(found)} "
                                 f"convolutions in the graph, {len(layers)} in {expected_name}")
        for position, (graph_layer, (layer, norm)) in enumerate(zip(found, layers,
                                                                     strict=True), start=1):
            same = (graph_layer.kernel.shape == tuple(layer.kernel.shape)
                    and graph_layer.transposed == isinstance(layer,
                                                             tf.keras.layers.Conv2DTranspose)
                    and graph_layer.stride == layer.strides[0]
                    and graph_layer.padding == _keras_padding(layer)
                    and (graph_layer.norm is None) == (norm is None))
            if not same:
                raise StructureError(
                    f"{_differs(expected_name)}{label} layer {position} is a "
                    f"{graph_layer.describe()} in the graph, a {_describe_keras(layer, norm)} "
                    f"in {expected_name}")
            layer.kernel.assign(graph_layer.kernel)
            layer.bias.assign(graph_layer.bias)
            if norm is not None:
                norm.gamma.assign(graph_layer.norm[0])
                norm.beta.assign(graph_layer.norm[1])
    if networks.generator_input_norm is None:
        raise StructureError(f"{_differs(expected_name)}G does not begin with a ChannelNorm")
    input_norm = model.generator.head.layers[0]
    input_norm.gamma.assign(networks.generator_input_norm[0])
    input_norm.beta.assign(networks.generator_input_norm[1])


def import_published(meta_graph: tf.compat.v1.MetaGraphDef,
                     expected: ModelConfig | None = None,
                     expected_name: str = "graph's",
                     source: str = "the graph") -> tuple[HiFiC, GraphCoding]:
    """A Keras HiFiC holding a published graph's weights, and the graph's coding tables.

    With `expected`, a graph of another architecture is refused (StructureError, naming the
    first difference); without, the architecture is the graph's own. The graph's ops are
    checked first (`hific_tf.published.graph_safety`; `source` names it): importing evaluates
    some of its subgraphs.
    """
    graph_safety.check_meta_graph(meta_graph, source)
    config = expected
    scale_table = None if expected is None else expected.scale_table()
    networks = trace_networks(meta_graph, scale_table)
    if expected is None:
        config = graph_config(networks)
    else:
        check_config(networks, expected, expected_name)
    if (networks.coding.precision, networks.coding.overflow_width) != (
            runner.AUTHORS_PRECISION, runner.AUTHORS_OVERFLOW_WIDTH):
        raise StructureError(
            f"the graph's range coders use precision {networks.coding.precision} and overflow "
            f"width {networks.coding.overflow_width}; the authors' coder mode uses "
            f"{runner.AUTHORS_PRECISION} and {runner.AUTHORS_OVERFLOW_WIDTH}")
    # The authors' h_s runs in float, so an imported model codes .hfc files as their graph
    # computes means and scales.
    model = HiFiC(dataclasses.replace(config, hyper_synthesis="float"))
    import_networks(networks, model, expected_name)
    return model, networks.coding


def import_published_file(path: str | Path, expected: ModelConfig | None = None,
                          expected_name: str = "graph's") -> tuple[HiFiC, GraphCoding]:
    """`import_published` on a `.metagraph` file."""
    return import_published(read_metagraph(path), expected, expected_name, Path(path).name)
