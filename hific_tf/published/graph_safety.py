"""Model files are programs: the op types HiFiC's coding graphs need, checked before any runs.

A published `.metagraph` and a SavedModel are graphs that TensorFlow executes, and an op such
as WriteFile, ReadFile or MatchingFiles in one touches the file system when it runs. So before
either is imported or loaded, every node of the file (its function library included) is
checked against `CODING_OPS`, the op types of the authors' HiFiC graphs and of this project's
own; any other op is refused in one line naming the op and its node, and nothing runs.

What runs, precisely (docs/published-models.md, "Model files are programs"): a published graph
is imported whole and pruned to its signatures, so every node and every function counts. A
SavedModel is loaded by TensorFlow 2's `tf.saved_model.load`, which runs the functions of its
object graph (the coding functions, the signatures, any resource initialisers) and restores
the variables with RestoreV2 ops that it builds itself; it never runs the file's own saver
graph (the two functions the meta graph's saver_def names, `__inference__traced_save_*` and
`_restore_*`, which hold SaveV2 and RestoreV2). Only those functions, and only where nothing
else calls them, may also hold `SAVER_OPS`. TensorFlow 1 SavedModels, whose loading does run
the file's restore and init ops, are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from hific_tf.errors import UserError
from hific_tf.storage.files import read_message

if TYPE_CHECKING:
    from tensorflow.core.framework.graph_pb2 import GraphDef
    from tensorflow.core.framework.node_def_pb2 import NodeDef
    from tensorflow.core.protobuf.meta_graph_pb2 import MetaGraphDef

# The op types HiFiC's coding may run, from three sources (docs/published-models.md lists them
# with the same grouping): the stand-ins of the published graphs (tests/hific_stand_in.py,
# version-1 loops and control-flow v2 functions); this project's exported SavedModels (the
# coding functions and the graph around them, listed from `hific-tf export` of the tiny
# preset with integer and float h_s and with each normalization, and of the bundled
# hific-small); and the authors' coding path (models/hific with tensorflow-compression 1.3
# under TF 1.15: Add, Tile, ExpandDims, TensorArraySizeV3, PlaceholderWithDefault, the
# Snapshot copies the weight importer passes through, and the ops that compute the CDF tables
# if an export left them to the graph: Softplus, Tanh, BatchMatMulV2, Sigmoid, Sign, AddN,
# Erfc). None reads or writes files or talks to other processes.
CODING_OPS = frozenset({
    # The stand-ins: networks, padding, quantisation, range coders, loops.
    "AddV2", "BiasAdd", "BroadcastTo", "Cast", "ConcatV2", "Const", "Conv2D",
    "Conv2DBackpropInput", "Enter", "Exit", "Fill", "Floor", "FloorMod", "Greater",
    "Identity", "Less", "LessEqual", "LogicalAnd", "LoopCond", "MatMul", "Maximum", "Mean",
    "Merge", "Minimum", "MirrorPad", "Mul", "NextIteration", "Pack", "Pad", "Placeholder",
    "PmfToQuantizedCdf", "Range", "RealDiv", "Relu", "Reshape", "Rsqrt", "Shape",
    "SquaredDifference", "StatelessWhile", "StopGradient", "StridedSlice", "Sub", "Sum",
    "Switch", "TensorArrayGatherV3", "TensorArrayReadV3", "TensorArrayScatterV3",
    "TensorArrayV3", "TensorArrayWriteV3", "TensorListFromTensor", "TensorListGetItem",
    "TensorListReserve", "TensorListSetItem", "TensorListStack", "Transpose",
    "UnboundedIndexRangeDecode", "UnboundedIndexRangeEncode",
    # This project's SavedModels: the .hfc format, its checks, tiling, integer h_s.
    "Abs", "All", "Any", "ArgMin", "AsString", "Assert", "BitwiseAnd", "Ceil",
    "ClipByValue", "CreateRangeDecoder", "CreateRangeEncoder", "DecodeRaw", "DepthToSpace",
    "DivNoNan", "EntropyDecodeChannel", "EntropyDecodeFinalize", "EntropyDecodeIndex",
    "EntropyEncodeChannel", "EntropyEncodeFinalize", "EntropyEncodeIndex", "Equal",
    "Fingerprint", "FloorDiv", "GatherV2", "GreaterEqual", "LeftShift", "LowerBound", "Max",
    "Neg", "NoOp", "Prod", "ReadVariableOp", "ReduceJoin", "ResourceGather", "RightShift",
    "Round", "SelectV2", "Size", "Sqrt", "Square", "StatefulPartitionedCall", "StringJoin",
    "StringLength", "Substr", "TensorListConcatV2", "VarHandleOp", "While",
    # ... those whose E and G use batch normalization (ModelConfig.normalization), and the
    # call op of functions that read no variables (its callee is checked like any function).
    "FusedBatchNormV3", "PartitionedCall",
    # The authors' coding path (TF 1.15, tensorflow-compression 1.3) beyond the above.
    "Add", "AddN", "BatchMatMulV2", "Erfc", "ExpandDims", "PlaceholderWithDefault",
    "Sigmoid", "Sign", "Snapshot", "Softplus", "Tanh", "TensorArraySizeV3", "Tile",
})

# What a SavedModel's saver functions hold besides coding ops (they write and read the
# checkpoint under variables/); allowed only there, because tf.saved_model.load never runs
# them (see the module docstring).
SAVER_OPS = frozenset({
    "AssignVariableOp", "DisableCopyOnRead", "MergeV2Checkpoints", "RestoreV2", "SaveV2",
    "Select", "ShardedFilename", "StaticRegexFullMatch",
})


class UnsafeGraphError(UserError):
    """A model file holds an op that HiFiC's coding does not need."""


def _attr_functions(node: NodeDef) -> list[str]:
    """The functions a NodeDef names in its attrs (a While's body, a call's f)."""
    names = []
    for value in node.attr.values():
        names.append(value.func.name)
        names += [function.name for function in value.list.func]
    return [name for name in names if name]


def check_graph_def(graph_def: GraphDef, source: str, saver_nodes: Iterable[str] = (),
                    roots: Iterable[str] = ()) -> None:
    """Refuses `graph_def` (UnsafeGraphError, one line starting with `source`) if a node or a
    function's node has an op outside `CODING_OPS` or names a function the graph lacks; a
    node whose op is a function of the library calls it, and that function is checked.

    The nodes named in `saver_nodes`, and the functions only they reach (not the top-level
    graph's other nodes, nor the functions named in `roots`), may also use `SAVER_OPS`.
    """
    library = {function.signature.name: function for function in graph_def.library.function}
    saver_nodes = set(saver_nodes)

    def callees(nodes: Iterable[NodeDef]) -> list[str]:
        return [name for node in nodes for name in (node.op, *_attr_functions(node))
                if name in library]

    def reached(starts: Iterable[str]) -> set[str]:
        seen, pending = set(), [name for name in starts if name in library]
        while pending:
            name = pending.pop()
            if name not in seen:
                seen.add(name)
                pending += callees(library[name].node_def)
        return seen

    coding = reached([*callees(node for node in graph_def.node
                                if node.name not in saver_nodes), *roots])
    saving = reached(callees(node for node in graph_def.node
                             if node.name in saver_nodes)) - coding

    def check(node: NodeDef, function: str | None, allowed: frozenset[str]) -> None:
        where = f" in function '{function}'" if function else ""
        for name in _attr_functions(node):
            if name not in library:
                raise UnsafeGraphError(
                    f"{source}: node '{node.name}'{where} calls the function '{name}', "
                    "which the file does not define; refusing to run it")
        if node.op not in library and node.op not in allowed:
            raise UnsafeGraphError(
                f"{source}: op {node.op} (node '{node.name}'{where}) is not one HiFiC's "
                "coding needs; refusing to run it")

    for node in graph_def.node:
        check(node, None, CODING_OPS | SAVER_OPS if node.name in saver_nodes else CODING_OPS)
    for name, function in library.items():
        allowed = CODING_OPS | SAVER_OPS if name in saving else CODING_OPS
        for node in function.node_def:
            check(node, name, allowed)


def check_meta_graph(meta_graph: MetaGraphDef, source: str) -> None:
    """Refuses a published MetaGraphDef (`source`: its file name, for the message) holding an
    op outside `CODING_OPS` anywhere, its function library included."""
    check_graph_def(meta_graph.graph_def, source)


def check_saved_model(directory: str | Path) -> None:
    """Refuses the SavedModel at `directory` before anything of it is loaded: its
    saved_model.pb (what tf.saved_model.load reads) must be a TensorFlow 2 SavedModel whose
    graphs hold only `CODING_OPS`, and `SAVER_OPS` only in the saver functions."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(directory) / "saved_model.pb"
    saved_model = read_message(path, saved_model_pb2.SavedModel(), "is not a serialized "
                               "SavedModel; export the model again (hific-tf export)")
    graphs = saved_model.meta_graphs
    if len(graphs) != 1 or not graphs[0].HasField("object_graph_def"):
        raise UnsafeGraphError(
            f"{path} is a TensorFlow 1 SavedModel, whose loading runs the file's own restore "
            "and init ops; hific-tf runs the SavedModels `hific-tf export` writes")
    for meta_graph in graphs:
        saver = meta_graph.saver_def
        saver_nodes = {name.split(":")[0] for name in
                       (saver.save_tensor_name, saver.restore_op_name) if name}
        check_graph_def(meta_graph.graph_def, str(path), saver_nodes,
                        roots=meta_graph.object_graph_def.concrete_functions)
