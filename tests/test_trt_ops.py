"""TensorRT compatibility check: ops from the support-matrix data, constant-input rules, I/O."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from export.trt_ops import TrtOpSupport, check_model

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], initializers: list[onnx.TensorProto] | None = None,
           opset: int = 18, checked: bool = True) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if checked:  # the checker itself refuses unranked graph outputs
        onnx.checker.check_model(model)
    return model


def _x(name: str = "x", dtype: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, ["batch", 4])


def test_support_data_cites_its_source_and_covers_our_ops() -> None:
    support = TrtOpSupport.load()
    assert "onnx/onnx-tensorrt" in support.source and "operators.md" in support.source
    used_by_our_models = {"Add", "Concat", "Conv", "Div", "LeakyRelu", "Reshape", "Sigmoid",
                          "Slice", "Split", "Sub", "Transpose", "Gemm", "Relu", "MatMul"}
    assert used_by_our_models <= support.supported
    assert not support.supported & support.unsupported


def test_supported_graph_passes() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_x()], [_x("y")])
    report = check_model(model, "relu")
    assert report.ok and report.op_counts == {"Relu": 1}


def test_unsupported_op_fails_with_the_op_named() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Unique", ["r"], ["y"], name="dedupe", sorted=1)]
    y = helper.make_tensor_value_info("y", FLOAT, ["n"])
    report = check_model(_model(nodes, [_x()], [y]), "bad")
    assert not report.ok
    assert [(i.where, i.op_type) for i in report.issues] == [("dedupe", "Unique")]
    assert "Unique" in report.format() and "not supported by TensorRT" in report.format()


def test_custom_domain_op_fails() -> None:
    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")
    graph = helper.make_graph([node], "g", [_x()], [_x("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("com.example", 1)])
    report = check_model(model)
    assert [i.op_type for i in report.issues] == ["FancyOp"]
    assert "plugin" in report.issues[0].message


def test_runtime_computed_slice_axes_fail_but_constant_axes_pass() -> None:
    starts = helper.make_tensor("starts", INT64, [1], [1])
    ends = helper.make_tensor("ends", INT64, [1], [3])
    axes = helper.make_tensor("axes", INT64, [1], [1])
    const_slice = helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="s")
    y = helper.make_tensor_value_info("y", FLOAT, ["batch", 2])
    assert check_model(_model([const_slice], [_x()], [y], [starts, ends, axes])).ok

    # axes derived from the input's shape at run time: TensorRT needs an initializer
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape", start=1, end=2),
             helper.make_node("Sub", ["shape", "one"], ["dyn_axes"], name="sub"),
             helper.make_node("Slice", ["x", "starts", "ends", "dyn_axes"], ["y"], name="s")]
    one = helper.make_tensor("one", INT64, [1], [3])
    report = check_model(_model(nodes, [_x()], [y], [starts, ends, one]))
    assert [(i.where, i.op_type) for i in report.issues] == [("s", "Slice")]
    assert "'dyn_axes'" in report.issues[0].message


def test_int64_io_and_dynamic_rank_fail() -> None:
    cast = helper.make_node("Cast", ["x"], ["y"], name="cast", to=INT64)
    unranked = helper.make_tensor_value_info("x", FLOAT, None)
    model = _model([cast], [unranked], [helper.make_tensor_value_info("y", INT64, None)],
                   checked=False)
    messages = [str(i) for i in check_model(model).issues]
    assert any(m.startswith("input x") and "dynamic rank" in m for m in messages)
    assert any(m.startswith("output y") and "INT64" in m for m in messages)


def test_opset_outside_tensorrt_range_fails() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_x()], [_x("y")], opset=22)
    issues = check_model(model).issues
    assert len(issues) == 1 and "opset 22" in issues[0].message


def test_nodes_inside_subgraphs_are_checked() -> None:
    bad_branch = helper.make_graph(
        [helper.make_node("Unique", ["x"], ["u"], name="inner_unique")], "then", [],
        [helper.make_tensor_value_info("u", FLOAT, None)])
    ok_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["v"])], "else", [],
                                  [helper.make_tensor_value_info("v", FLOAT, None)])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=bad_branch,
                            else_branch=ok_branch)
    graph = helper.make_graph([node], "g", [cond, _x()],
                              [helper.make_tensor_value_info("y", FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    issues = check_model(model).issues
    assert ("inner_unique", "Unique") in [(i.where, i.op_type) for i in issues]
