"""Model files are programs: a published graph or a SavedModel holding an op that HiFiC's
coding does not need (file I/O here) is refused in one line naming the op and its node, and
nothing of it runs; the clean stand-ins and this project's own exports pass."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import function_pb2, graph_pb2

from hific_tf.codec import load_codec
from hific_tf.coding.model import HiFiC
from hific_tf.configs import model_preset
from hific_tf.published import graph_safety, runner, weight_import
from hific_tf.published.graph_safety import CODING_OPS, SAVER_OPS, UnsafeGraphError

from conftest import REPO
from hific_stand_in import build_stand_in, randomise

NAME = "hific-lo"
REFUSAL = "is not one HiFiC's coding needs; refusing to run it"
IMAGE = np.random.default_rng(5).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def stand_in() -> tf.compat.v1.MetaGraphDef:
    """The tiny stand-in of a published graph (version-1 loops, no functions)."""
    tf.keras.utils.set_random_seed(3)
    return build_stand_in(randomise(HiFiC(model_preset("tiny")).build_weights()))


def poisoned(stand_in: tf.compat.v1.MetaGraphDef, op: str, side: str, dependency: str,
             folder: Path) -> tf.compat.v1.MetaGraphDef:
    """The stand-in with one file op under the name scope "evil" that `side`'s signature
    depends on: by a control dependency, by data, or through a library function that the
    signature calls. A WriteFile writes `folder`/written."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.train.import_meta_graph(stand_in)
        key = "channel:2" if side == "sender" else "output_image"
        target = graph.get_tensor_by_name(stand_in.signature_def[side].outputs[key].name)

        def evil_op() -> tf.Tensor | tf.Operation:
            if op == "WriteFile":
                return tf.io.write_file(str(folder / "written"), "written by the graph",
                                        name="write")
            if op == "ReadFile":
                return tf.io.read_file(str(folder / "secret"), name="read")
            return tf.io.matching_files(str(folder / "*"), name="match")

        with tf.name_scope("evil"):
            if dependency == "function":
                evil = tf.function(lambda: [evil_op(), tf.constant(0)][1])()
            else:
                evil = evil_op()
        if dependency == "data":
            size = tf.cast(tf.size(evil), target.dtype)
            output = tf.add(target, size * tf.zeros([], target.dtype), name="evil/add")
        else:
            with tf.control_dependencies([evil]):
                output = tf.identity(target, name="evil/after")
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
    for signature in (runner.SENDER, runner.RECEIVER):
        meta_graph.signature_def[signature].CopyFrom(stand_in.signature_def[signature])
    meta_graph.signature_def[side].outputs[key].name = output.name
    return meta_graph


CASES = {  # id: (op, side, dependency, the node named in the refusal)
    "write-control-sender": ("WriteFile", "sender", "control", r"'evil/write'"),
    "read-data-receiver": ("ReadFile", "receiver", "data", r"'evil/read'"),
    "match-data-sender": ("MatchingFiles", "sender", "data", r"'evil/match'"),
    "write-in-function-receiver": ("WriteFile", "receiver", "function",
                                   r"'write' in function '__inference_<lambda>_\d+'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_graphs_with_file_ops_are_refused_and_nothing_runs(stand_in, case, tmp_path):
    op, side, dependency, node = CASES[case]
    meta_graph = poisoned(stand_in, op, side, dependency, tmp_path)
    assert op in {node.op for node in meta_graph.graph_def.node} | {
        node.op for function in meta_graph.graph_def.library.function
        for node in function.node_def}
    (tmp_path / f"{NAME}.metagraph").write_bytes(meta_graph.SerializeToString())
    message = rf"^{re.escape(NAME)}\.metagraph: op {op} \(node {node}\) {re.escape(REFUSAL)}$"
    with pytest.raises(UnsafeGraphError, match=message):
        runner.load_published(NAME, directory=tmp_path)
    with pytest.raises(UnsafeGraphError, match=message):
        runner.PublishedModel(meta_graph, NAME)
    with pytest.raises(UnsafeGraphError, match=message):  # convert, --init_from_published
        weight_import.import_published_file(tmp_path / f"{NAME}.metagraph")
    assert not (tmp_path / "written").exists()


def test_the_refused_write_would_have_run(stand_in, tmp_path, monkeypatch):
    """Without the check, the first case's graph writes its file when it codes: what the
    refusal prevents is real."""
    meta_graph = poisoned(stand_in, "WriteFile", "sender", "control", tmp_path)
    monkeypatch.setattr(graph_safety, "check_meta_graph", lambda *args: None)
    runner.PublishedModel(meta_graph, NAME).compress(IMAGE)
    assert (tmp_path / "written").read_bytes() == b"written by the graph"


def test_the_clean_stand_ins_pass(stand_in):
    graph_safety.check_meta_graph(stand_in, "tiny.metagraph")
    narrow = dataclasses.replace(model_preset("tiny"), latent_channels=12, residual_blocks=2,
                                 encoder_channels=(6, 12, 16, 24, 40), hyper_channels=16)
    functions = build_stand_in(HiFiC(narrow).build_weights(), control_flow="v2",
                               rdft_synthesis=True)
    assert functions.graph_def.library.function
    graph_safety.check_meta_graph(functions, "narrow.metagraph")


class Poisoned(tf.Module):
    """A SavedModel-shaped codec whose compress calls a tf.function that writes a file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = str(path)
        self.calls = tf.Variable(0)  # so that the SavedModel has variables and a saver

    @tf.function(input_signature=[])
    def leak(self) -> tf.Tensor:
        tf.io.write_file(self.path, "written by the model")
        return self.calls.assign_add(1)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def compress(self, image: tf.Tensor) -> tf.Tensor:
        with tf.control_dependencies([self.leak()]):
            return tf.strings.as_string(tf.size(image))

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def decompress(self, data: tf.Tensor) -> tf.Tensor:
        return tf.zeros([1, 1, 3], tf.uint8) + tf.cast(tf.strings.length(data) * 0, tf.uint8)


def save_poisoned(directory: Path, written: Path) -> None:
    module = Poisoned(written)
    tf.saved_model.save(module, str(directory), signatures={
        "compress": module.compress.get_concrete_function(),
        "decompress": module.decompress.get_concrete_function()})


def test_a_saved_model_with_a_poisoned_signature_is_refused_before_loading(tmp_path):
    written = tmp_path / "written"
    save_poisoned(tmp_path / "sm", written)
    message = (rf"^{re.escape(str(tmp_path / 'sm' / 'saved_model.pb'))}: op WriteFile \(node "
               rf"'WriteFile' in function '__inference_leak_\d+'\) {re.escape(REFUSAL)}$")
    with pytest.raises(UnsafeGraphError, match=message):
        load_codec(tmp_path / "sm")
    assert not written.exists()
    # The same file loaded without the check writes when it codes.
    tf.saved_model.load(str(tmp_path / "sm")).signatures["compress"](image=tf.constant(IMAGE))
    assert written.read_bytes() == b"written by the model"


@pytest.mark.slow
def test_compress_refuses_a_poisoned_saved_model_in_one_line(tmp_path):
    from test_cli import assert_one_clean_error

    from conftest import run_cli

    written = tmp_path / "written"
    save_poisoned(tmp_path / "sm", written)
    source = tmp_path / "photo.png"
    tf.io.write_file(str(source), tf.io.encode_png(IMAGE))
    result = run_cli("compress", f"--model={tmp_path / 'sm'}", str(source))
    assert_one_clean_error(result, "op WriteFile (node 'WriteFile' in function '__inference_leak")
    assert result.returncode == 1
    assert not written.exists() and not (tmp_path / "photo.hfc").exists()


def test_a_tensorflow_1_saved_model_is_refused(tmp_path):
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session() as session:
        tf.compat.v1.Variable(1.0, name="weight")
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(tmp_path / "v1"))
        builder.add_meta_graph_and_variables(session, ["serve"])
        builder.save()
    with pytest.raises(UnsafeGraphError, match="is a TensorFlow 1 SavedModel"):
        load_codec(tmp_path / "v1")


def _function(name: str, *nodes: tuple[str, str, str | None]) -> function_pb2.FunctionDef:
    function = function_pb2.FunctionDef()
    function.signature.name = name
    for node_name, op, callee in nodes:
        node = function.node_def.add(name=node_name, op=op)
        if callee:
            node.attr["f"].func.name = callee
    return function


def test_saver_functions_may_save_but_nothing_else_may_call_them():
    graph_def = graph_pb2.GraphDef()
    graph_def.library.function.append(_function("save", ("save_v2", "SaveV2", None)))
    graph_def.node.add(name="saver", op="StatefulPartitionedCall").attr["f"].func.name = "save"
    graph_safety.check_graph_def(graph_def, "model", saver_nodes=["saver"])
    with pytest.raises(UnsafeGraphError, match=r"^model: op SaveV2 \(node 'save_v2' in "
                                               r"function 'save'\)"):
        graph_safety.check_graph_def(graph_def, "model")  # no saver: the save is coding's
    graph_def.library.function.append(_function("coding", ("call", "PartitionedCall", "save")))
    with pytest.raises(UnsafeGraphError, match="op SaveV2"):  # an object's function calls it
        graph_safety.check_graph_def(graph_def, "model", saver_nodes=["saver"],
                                     roots=["coding"])


def test_functions_called_by_op_name_are_checked_and_missing_ones_refused():
    graph_def = graph_pb2.GraphDef()
    graph_def.library.function.append(_function("helper", ("read", "ReadFile", None)))
    graph_def.node.add(name="call", op="helper")
    with pytest.raises(UnsafeGraphError, match=r"op ReadFile \(node 'read' in function "
                                               r"'helper'\)"):
        graph_safety.check_graph_def(graph_def, "model")
    graph_def = graph_pb2.GraphDef()
    graph_def.node.add(name="loop", op="While").attr["body"].func.name = "elsewhere"
    with pytest.raises(UnsafeGraphError, match="node 'loop' calls the function 'elsewhere', "
                                               "which the file does not define"):
        graph_safety.check_graph_def(graph_def, "model")


def test_the_allow_lists_are_registered_ops_and_documented():
    import tensorflow_compression  # noqa: F401  Registers the range-coding ops.
    from tensorflow.python.framework import op_def_registry

    assert not CODING_OPS & SAVER_OPS
    assert [op for op in sorted(CODING_OPS | SAVER_OPS) if op_def_registry.get(op) is None] == []
    assert not {"ReadFile", "WriteFile", "MatchingFiles", "PrintV2", "ImmutableConst",
                "PyFunc", "EagerPyFunc", "SaveV2", "RestoreV2"} & CODING_OPS
    text = (REPO / "docs" / "published-models.md").read_text()
    lists = text.split("`CODING_OPS` (hific_tf/published/graph_safety.py", 1)[1]
    coding, saver = lists.split("`SAVER_OPS`, allowed only", 1)
    saver = saver.split("\n\n", 1)[0]
    assert set(re.findall(r"`([A-Z]\w+)`", coding)) == CODING_OPS
    assert set(re.findall(r"`([A-Z]\w+)`", saver)) == SAVER_OPS
