"""Imports a published model's weights into this project's Keras HiFiC, by structure.

The published graphs hold every weight as an unnamed constant, so the networks are found
from the data flow, never from node names:

- the sender has two range encoders; z's symbols depend on fewer convolutions than y's;
- E and h_a are the convolutions on the path from the image to z's symbols, and E ends at
  the convolution whose output reaches y's symbols with no convolution in between (y);
- the receiver has two range decoders; z's depends on no convolution. h_s_scale is what
  feeds y's decoder its indexes, h_s_mean the other convolutions after z's decoder and
  before y's, and G everything after y's decoder.

Within a network, convolutions are ordered by the data flow; each one's kernel is the
constant feeding its Conv2D (Conv2DBackpropInput when transposed) and its bias the constant
added right after. A ChannelNorm is recognised by its pattern (a channel mean, an Rsqrt, a
multiplication by a per-channel constant gamma, an addition of a per-channel constant beta).

The architecture is read off the kernel shapes, compared with the expected one, and every
difference is refused with a message naming it. z's factorized prior is not in the coding
graphs (only its range-coding tables are); the imported model codes with those tables, and
its own prior, which only training uses, starts fresh.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from hific_tf.configs import ModelConfig
from hific_tf.entropy_coding import ZTables
from hific_tf.errors import UserError
from hific_tf.model import HiFiC
from hific_tf.published import RECEIVER, SENDER, read_metagraph

# Convolution ops: (data input, kernel input).
_CONVOLUTIONS = {"Conv2D": (0, 1), "Conv2DBackpropInput": (2, 1)}
_ENCODERS = {"UnboundedIndexRangeEncode"}
_DECODERS = {"UnboundedIndexRangeDecode"}
_PASS_THROUGH = {"Identity", "Snapshot", "StopGradient"}
_ADDS = {"Add", "AddV2", "BiasAdd"}
# Where a search for a layer's bias or norm stops: the next layer begins there.
_LAYER_BOUNDARIES = {*_CONVOLUTIONS, "Relu", "LeakyRelu", *_ENCODERS, *_DECODERS}
_NORM_MAX_OPS = 12  # a ChannelNorm is about eight ops


class StructureError(UserError):
    """The graph is not HiFiC of the expected architecture."""


@dataclasses.dataclass
class GraphLayer:
    """One convolution found in the graph, with its bias and the ChannelNorm after it."""

    node: str
    kernel: np.ndarray
    bias: np.ndarray
    transposed: bool
    stride: int
    norm: tuple[np.ndarray, np.ndarray] | None  # (gamma, beta)

    def describe(self) -> str:
        height, width, *channels = self.kernel.shape
        inputs, outputs = reversed(channels) if self.transposed else channels
        kind = "transposed conv" if self.transposed else "conv"
        norm = " + ChannelNorm" if self.norm is not None else ""
        return f"{kind} {height}x{width} {inputs}->{outputs} stride {self.stride}{norm}"


@dataclasses.dataclass
class GraphNetworks:
    """What the graph holds, network by network, plus z's coding tables."""

    encoder: list[GraphLayer]
    analysis: list[GraphLayer]
    synthesis_mean: list[GraphLayer]
    synthesis_scale: list[GraphLayer]
    generator: list[GraphLayer]
    generator_input_norm: tuple[np.ndarray, np.ndarray] | None
    z_tables: ZTables
    y_table_rows: int

    def infer_config(self) -> dict[str, object]:
        """The ModelConfig fields that the shapes determine."""
        upsampling = [layer for layer in self.generator if layer.transposed]
        return {
            "encoder_channels": tuple(layer.kernel.shape[-1] for layer in self.encoder[:-1]),
            "latent_channels": self.encoder[-1].kernel.shape[-1] if self.encoder else 0,
            "hyper_channels": self.analysis[0].kernel.shape[-1] if self.analysis else 0,
            "residual_blocks": max(len(self.generator) - len(upsampling) - 2, 0) // 2,
            "num_scales": self.y_table_rows,
        }


class _Graph:
    """A GraphDef indexed for walking its data flow both ways."""

    def __init__(self, graph_def: tf.compat.v1.GraphDef) -> None:
        self.nodes = {node.name: node for node in graph_def.node}
        self.consumers: dict[str, list[str]] = collections.defaultdict(list)
        for node in graph_def.node:
            for name in self.inputs(node.name):
                self.consumers[name].append(node.name)
        self.order = self._topological_order()

    def inputs(self, name: str) -> list[str]:
        """Names of the nodes whose outputs feed `name` (control inputs left out)."""
        return [text.split(":")[0] for text in self.nodes[name].input
                if not text.startswith("^")]

    def input(self, name: str, position: int) -> str:
        return self.nodes[name].input[position].split(":")[0]

    def op(self, name: str) -> str:
        return self.nodes[name].op

    def _topological_order(self) -> dict[str, int]:
        pending = {name: len(self.inputs(name)) for name in self.nodes}
        ready = collections.deque(name for name, count in pending.items() if count == 0)
        order: dict[str, int] = {}
        while ready:
            name = ready.popleft()
            order[name] = len(order)
            for consumer in self.consumers[name]:
                pending[consumer] -= 1
                if pending[consumer] == 0:
                    ready.append(consumer)
        return order

    def walk(self, starts: Iterable[str], forward: bool,
             stop: Callable[[str], bool] = lambda name: False) -> set[str]:
        """Every node reached from `starts` (included); `stop` nodes are not walked past."""
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

    def near(self, start: str, forward: bool, steps: int,
             stop: Callable[[str], bool]) -> set[str]:
        """The nodes at most `steps` edges from `start`; `stop` nodes are not walked past."""
        seen, frontier = {start}, [start]
        for _ in range(steps):
            frontier = [neighbour for name in frontier if name == start or not stop(name)
                        for neighbour in (self.consumers[name] if forward
                                          else self.inputs(name))
                        if neighbour not in seen]
            seen.update(frontier)
        return seen

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a Const node, looking through identities; None for anything else."""
        while self.op(name) in _PASS_THROUGH:
            name = self.inputs(name)[0]
        if self.op(name) != "Const":
            return None
        return tf.make_ndarray(self.nodes[name].attr["value"].tensor)

    def convolutions(self, names: Iterable[str]) -> list[str]:
        """The convolutions among `names`, in data-flow order."""
        return sorted((name for name in names if self.op(name) in _CONVOLUTIONS),
                      key=self.order.__getitem__)

    def constant_operand(self, name: str, size: int) -> tuple[np.ndarray, str] | None:
        """A [size] constant among the inputs of `name` and the other input's name."""
        inputs = self.inputs(name)
        if len(inputs) != 2:
            return None
        for position in (0, 1):
            value = self.constant(inputs[position])
            if value is not None and value.shape == (size,):
                return value, inputs[1 - position]
        return None


def _norm_ending_at(graph: _Graph, name: str, channels: int
                    ) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(gamma, beta, input) if `name` is the last op of a ChannelNorm."""
    if graph.op(name) not in _ADDS:
        return None
    shift = graph.constant_operand(name, channels)
    if shift is None:
        return None
    beta, scaled = shift
    if graph.op(scaled) != "Mul":
        return None
    scale = graph.constant_operand(scaled, channels)
    if scale is None:
        return None
    gamma, normalised = scale
    # (x - mean(x)) * rsqrt(variance + epsilon), a few ops back from the scaling.
    region = graph.near(normalised, forward=False, steps=4,
                        stop=lambda node: graph.op(node) in ("Rsqrt", "Mean"))
    means = [node for node in region if graph.op(node) == "Mean"]
    if len(means) != 1 or not any(graph.op(node) == "Rsqrt" for node in region):
        return None
    return gamma, beta, graph.inputs(means[0])[0]


def _norm_after(graph: _Graph, name: str, channels: int
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """The ChannelNorm that normalises the output of node `name`, if one does."""
    if not any(graph.op(consumer) == "Mean" for consumer in graph.consumers[name]):
        return None
    frontier, seen = [name], {name}
    for _ in range(_NORM_MAX_OPS):
        following = []
        for node in frontier:
            for consumer in graph.consumers[node]:
                if consumer in seen or graph.op(consumer) in _LAYER_BOUNDARIES:
                    continue
                found = _norm_ending_at(graph, consumer, channels)
                if found is not None and found[2] == name:
                    return found[0], found[1]
                seen.add(consumer)
                following.append(consumer)
        frontier = following
    return None


def _layer(graph: _Graph, name: str) -> GraphLayer:
    """Kernel, bias and following norm of the convolution `name`."""
    node = graph.nodes[name]
    kernel = graph.constant(graph.input(name, _CONVOLUTIONS[node.op][1]))
    if kernel is None:
        raise StructureError(f"the kernel of convolution {name} is not a constant; the graph "
                             "is not a frozen published model")
    transposed = node.op == "Conv2DBackpropInput"
    channels = kernel.shape[2] if transposed else kernel.shape[3]
    bias = None
    output = name
    for consumer in graph.consumers[name]:
        if graph.op(consumer) in _ADDS:
            found = graph.constant_operand(consumer, channels)
            if found is not None:
                bias, output = found[0], consumer
                break
    if bias is None:
        raise StructureError(f"convolution {name} ({kernel.shape}) has no bias; every HiFiC "
                             "convolution has one")
    strides = list(node.attr["strides"].list.i)
    return GraphLayer(node=name, kernel=kernel, bias=bias, transposed=transposed,
                      stride=strides[1] if strides else 1,
                      norm=_norm_after(graph, output, channels))


def _two(graph: _Graph, names: Iterable[str], ops: set[str], side: str) -> list[str]:
    """The two range coders (z's first) of one side, ordered by how many convolutions
    they depend on."""
    coders = [name for name in names if graph.op(name) in ops]
    if len(coders) != 2:
        raise StructureError(f"the {side} has {len(coders)} range coders, HiFiC has two "
                             "(z and y)")
    return sorted(coders, key=lambda name: len(graph.convolutions(
        graph.walk([name], forward=False))))


def _evaluate(meta_graph: tf.compat.v1.MetaGraphDef, names: list[str]) -> list[np.ndarray]:
    """Runs the parts of the graph that depend on no signature input."""
    import tensorflow_compression  # noqa: F401  Registers the range-coding ops.

    imported = tf.compat.v1.wrap_function(
        lambda: tf.compat.v1.train.import_meta_graph(meta_graph), [])
    tensors = [imported.graph.get_tensor_by_name(f"{name}:0") for name in names]
    return [value.numpy() for value in imported.prune([], tensors)()]


def _z_tables(graph: _Graph, encoder: str, channels: int, cdf: np.ndarray,
              cdf_size: np.ndarray, cdf_offset: np.ndarray) -> ZTables:
    """z's CDFs (the z range encoder's evaluated inputs) in tfc 2.x layout."""
    if cdf.shape[0] != channels:
        raise StructureError(f"z's range coder has {cdf.shape[0]} CDFs for {channels} "
                             "channels of z")
    precision = graph.nodes[encoder].attr["precision"].i
    rows = [np.concatenate([[-precision], cdf[channel, :cdf_size[channel]]])
            for channel in range(channels)]
    # z is quantised around a per-channel offset (the prior's medians) before coding.
    symbols = graph.walk([graph.input(encoder, 0)], forward=False,
                         stop=lambda node: graph.op(node) in _CONVOLUTIONS)
    offset = np.zeros([channels], np.float32)
    for node in symbols:
        if graph.op(node) in ("Sub", "Add", "AddV2"):
            found = graph.constant_operand(node, channels)
            if found is not None:
                offset = found[0] if graph.op(node) == "Sub" else -found[0]
    return ZTables(cdf=tf.constant(np.concatenate(rows).astype(np.int32)),
                   cdf_offset=tf.constant(cdf_offset.astype(np.int32)),
                   quantization_offset=tf.constant(offset.astype(np.float32)))


def trace_networks(meta_graph: tf.compat.v1.MetaGraphDef) -> GraphNetworks:
    """Finds E, h_a, the two h_s, G and z's coding tables in a published graph."""
    graph = _Graph(meta_graph.graph_def)
    sender = meta_graph.signature_def[SENDER]
    receiver = meta_graph.signature_def[RECEIVER]
    image, = (info.name.split(":")[0] for info in sender.inputs.values())
    sent = graph.walk([image], forward=True) & graph.walk(
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
    encoder, analysis = to_z[:split], to_z[split:]

    output, = (info.name.split(":")[0] for info in receiver.outputs.values())
    received = graph.walk([output], forward=False)
    z_decoder, y_decoder = _two(graph, received, _DECODERS, "receiver")
    after_z = graph.walk([z_decoder], forward=True) & received
    after_y = graph.walk([y_decoder], forward=True) & received
    scale = graph.convolutions(graph.walk([graph.input(y_decoder, 1)], forward=False)
                               & after_z)
    mean = [name for name in graph.convolutions(after_z - after_y) if name not in scale]
    generator = graph.convolutions(after_y)
    if not generator:
        raise StructureError("the receiver has no convolutions after y's decoder (no G)")
    generator_layers = [_layer(graph, name) for name in generator]
    first_input = graph.input(generator[0], _CONVOLUTIONS[graph.op(generator[0])][0])
    input_norm = _norm_ending_at(graph, first_input, generator_layers[0].kernel.shape[2])
    analysis_layers = [_layer(graph, name) for name in analysis]
    z_channels = analysis_layers[-1].kernel.shape[-1] if analysis_layers else 0
    z_cdf, z_cdf_size, z_cdf_offset, y_cdf = _evaluate(
        meta_graph, [graph.input(z_encoder, position) for position in (2, 3, 4)]
        + [graph.input(y_encoder, 2)])
    return GraphNetworks(
        encoder=[_layer(graph, name) for name in encoder],
        analysis=analysis_layers,
        synthesis_mean=[_layer(graph, name) for name in mean],
        synthesis_scale=[_layer(graph, name) for name in scale],
        generator=generator_layers,
        generator_input_norm=None if input_norm is None else input_norm[:2],
        z_tables=_z_tables(graph, z_encoder, z_channels, z_cdf, z_cdf_size, z_cdf_offset),
        y_table_rows=int(y_cdf.shape[0]))


def _keras_layers(model: HiFiC) -> dict[str, list[tuple[tf.keras.layers.Layer, object]]]:
    """Each network's convolutions with the ChannelNorm that follows them (or None)."""
    from hific_tf.layers import ChannelNorm

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


_NETWORK_NAMES = {"encoder": "E", "analysis": "h_a", "synthesis_mean": "h_s (means)",
                  "synthesis_scale": "h_s (scales)", "generator": "G"}


def _describe_keras(layer: tf.keras.layers.Conv2D, norm: object) -> str:
    height, width = layer.kernel_size
    transposed = isinstance(layer, tf.keras.layers.Conv2DTranspose)
    kernel = layer.kernel.shape
    inputs, outputs = (kernel[3], kernel[2]) if transposed else (kernel[2], kernel[3])
    kind = "transposed conv" if transposed else "conv"
    return (f"{kind} {height}x{width} {inputs}->{outputs} stride {layer.strides[0]}"
            f"{' + ChannelNorm' if norm is not None else ''}")


def _check_config(networks: GraphNetworks, expected: ModelConfig, expected_name: str) -> None:
    inferred = networks.infer_config()
    for field, value in inferred.items():
        wanted = getattr(expected, field)
        if value != wanted:
            raise StructureError(
                f"the graph's structure differs from the {expected_name} architecture: "
                f"{field} is {value} in the graph, {wanted} in {expected_name}")


def import_networks(networks: GraphNetworks, model: HiFiC, expected_name: str) -> None:
    """Copies the graph's constants into `model`, refusing any structural difference."""
    model.build_weights()
    keras = _keras_layers(model)
    for network, layers in keras.items():
        found: list[GraphLayer] = getattr(networks, network)
        label = _NETWORK_NAMES[network]
        if len(found) != len(layers):
            raise StructureError(
                f"the graph's structure differs from the {expected_name} architecture: "
                f"{label} has {len(found)} convolutions in the graph, {len(layers)} in "
                f"{expected_name}")
        for position, (graph_layer, (layer, norm)) in enumerate(zip(found, layers,
                                                                     strict=True), start=1):
            same = (graph_layer.kernel.shape == tuple(layer.kernel.shape)
                    and graph_layer.transposed == isinstance(layer,
                                                             tf.keras.layers.Conv2DTranspose)
                    and graph_layer.stride == layer.strides[0]
                    and (graph_layer.norm is None) == (norm is None))
            if not same:
                raise StructureError(
                    f"the graph's structure differs from the {expected_name} architecture: "
                    f"{label} layer {position} is a {graph_layer.describe()} in the graph, "
                    f"a {_describe_keras(layer, norm)} in {expected_name}")
            layer.kernel.assign(graph_layer.kernel)
            layer.bias.assign(graph_layer.bias)
            if norm is not None:
                norm.gamma.assign(graph_layer.norm[0])
                norm.beta.assign(graph_layer.norm[1])
    input_norm = model.generator.head.layers[0]
    if networks.generator_input_norm is None:
        raise StructureError(f"the graph's structure differs from the {expected_name} "
                             "architecture: G does not begin with a ChannelNorm")
    input_norm.gamma.assign(networks.generator_input_norm[0])
    input_norm.beta.assign(networks.generator_input_norm[1])


def import_published(meta_graph: tf.compat.v1.MetaGraphDef,
                     expected: ModelConfig, expected_name: str) -> HiFiC:
    """A Keras HiFiC holding a published graph's weights, ready to code with its tables.

    Raises StructureError, naming the first difference, when the graph is not HiFiC of the
    `expected` architecture.
    """
    networks = trace_networks(meta_graph)
    _check_config(networks, expected, expected_name)
    # The authors' h_s runs in float, so an imported model codes as their graph does.
    model = HiFiC(dataclasses.replace(expected, hyper_synthesis="float"))
    import_networks(networks, model, expected_name)
    return model.prepare_for_coding(z_tables=networks.z_tables)


def import_published_file(path: str | Path, expected: ModelConfig,
                          expected_name: str) -> HiFiC:
    """`import_published` on a `.metagraph` file."""
    return import_published(read_metagraph(path), expected, expected_name)
