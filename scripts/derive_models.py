"""Derives faster variants of the pinned models, byte-for-byte reproducibly.

./setup runs `apply` after unpacking the wheels; the topology names the
derived files and pins their sha256, like the originals'. Two rewrites:

- layout: PaddlePaddle exports hard-swish as x * clip(x + 3, 0, 6) / 6, four
  element-wise passes that ONNX Runtime does not fuse; they become one
  `HardSwish` node (the same function). Float, nothing else changes.
- det, rec: static int8 quantisation with ONNX Runtime's own quantiser
  (QDQ, per-channel int8 weights, uint8 activations), after folding each
  convolution's bias add or batch norm into it and fusing GELU. Only the
  convolutions are quantised: the attention, the classifier head and the
  softmax stay float, and so does the recogniser's first convolution (on
  the raw pixels): quantised, it makes the model drop spaces (9 of 83
  calibration lines read differently from the float model; 1 of 83, a line
  of noise, with it float).

What makes the int8 models reproducible on any machine is that the
activation ranges are not measured at setup: they are committed in
topology/quantization/<model>.json, measured once by `calibrate` on real
pages, and every other step (opset conversion, the graph rewrites, weight
quantisation) is graph surgery or element-wise IEEE arithmetic on the
model's own numbers (no sums whose order could vary), which gives the same
bits on every CPU.

    # what ./setup runs, in the venv it makes (.pagestream/tools):
    .pagestream/tools/bin/python scripts/derive_models.py apply

    # once, when a model or the calibration pages change (./setup --reference):
    .pagestream/venv/bin/python scripts/derive_models.py calibrate samples/fax.tiff samples/report.pdf

`calibrate` runs the reference pipeline (rapidocr 3.10) on the pages and
keeps every input it gives the detection and recognition models. Keep the
pages the accuracy tests read (samples/scan-letter.png, samples/invoice.pdf)
out of it, so that those tests measure the int8 models on unseen pages.
"""

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / ".pagestream" / "models"
RANGES = ROOT / "topology" / "quantization"

# HardSwish needs opset 14; QDQ with per-channel scales needs 13.
OPSET = 14

# (source file, derived file) per derived model.
LAYOUT = ("layout_cdla.onnx", "layout_cdla.hardswish.onnx")
QUANTIZED = {
    "det": ("PP-OCRv6_det_small.onnx", "PP-OCRv6_det_small.int8.onnx"),
    "rec": ("PP-OCRv6_rec_small.onnx", "PP-OCRv6_rec_small.int8.onnx"),
}
# Operators quantised per model. Detection quantised throughout is 20%
# faster still, but moves the boxes of short lines (IoU 0.79 with the
# float model's on the test letter).
OP_TYPES = {"det": ["Conv"], "rec": ["Conv"]}
# Models whose convolution on the graph input stays float.
FLOAT_STEM = {"rec"}


def raised(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` at opset OPSET (a pure graph rewrite). ONNX Runtime's own
    pre-processing for the quantiser is not used: its constant folding runs
    CPU kernels, whose rounding may differ between machines; the folds this
    script needs are done exactly by `fold_into_convolutions`."""
    if model.opset_import[0].version < OPSET:
        model = version_converter.convert_version(model, OPSET)
    return model


def constants(graph: onnx.GraphProto) -> dict:
    """Name -> value of every initializer and Constant node output."""
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


class Index:
    """Lookups over a graph for pattern matching: constant values, the node
    producing each tensor and the nodes consuming it."""

    def __init__(self, graph: onnx.GraphProto):
        self.values = constants(graph)
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def is_scalar(self, name: str, value: float) -> bool:
        """Whether `name` is a one-element constant equal to `value` (to
        float32 precision)."""
        v = self.values.get(name)
        return v is not None and v.size == 1 and abs(float(v.reshape(-1)[0]) - value) < 1e-6

    def only_consumer(self, name: str):
        """The one node reading `name`, or None."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 else None


def fuse_hard_swish(model: onnx.ModelProto) -> int:
    """Replaces every x * clip(x + 3, 0, 6) / 6 with HardSwish(x); returns
    how many. Constants left unused are removed."""
    graph = model.graph
    index = Index(graph)
    is_scalar, only_consumer = index.is_scalar, index.only_consumer
    replaced, fused = set(), {}
    for clip in graph.node:
        if clip.op_type != "Clip" or len(clip.input) != 3:
            continue
        if not (is_scalar(clip.input[1], 0.0) and is_scalar(clip.input[2], 6.0)):
            continue
        add = index.producer.get(clip.input[0])
        if add is None or add.op_type != "Add" or only_consumer(add.output[0]) is not clip:
            continue
        inputs = [name for name in add.input if not is_scalar(name, 3.0)]
        if len(add.input) != 2 or len(inputs) != 1:
            continue
        x = inputs[0]
        mul = only_consumer(clip.output[0])
        if mul is None or mul.op_type != "Mul" or x not in mul.input:
            continue
        div = only_consumer(mul.output[0])
        if div is None or div.op_type != "Div" or not is_scalar(div.input[1], 6.0):
            continue
        replaced.update(id(node) for node in (add, clip, mul, div))
        fused[id(div)] = helper.make_node("HardSwish", [x], [div.output[0]], name=f"{div.name}.hardswish")
    nodes = [fused.get(id(node), node) for node in graph.node if id(node) not in replaced or id(node) in fused]
    prune(graph, nodes)
    return len(fused)


def fuse_gelu(model: onnx.ModelProto) -> int:
    """Replaces every (x * (erf(x / sqrt 2) + 1)) * 0.5 with ONNX Runtime's
    Gelu(x); returns how many. ONNX Runtime fuses this itself in a float
    graph, but not once the quantiser has put a dequantise before x."""
    graph = model.graph
    index = Index(graph)
    is_scalar, only_consumer = index.is_scalar, index.only_consumer
    replaced, fused = set(), {}
    for erf in graph.node:
        if erf.op_type != "Erf":
            continue
        div = index.producer.get(erf.input[0])
        if div is None or div.op_type != "Div" or not is_scalar(div.input[1], 2**0.5):
            continue
        x = div.input[0]
        add = only_consumer(erf.output[0])
        if add is None or add.op_type != "Add" or not any(is_scalar(i, 1.0) for i in add.input):
            continue
        mul = only_consumer(add.output[0])
        if mul is None or mul.op_type != "Mul" or x not in mul.input:
            continue
        half = only_consumer(mul.output[0])
        if half is None or half.op_type != "Mul" or not any(is_scalar(i, 0.5) for i in half.input):
            continue
        replaced.update(id(node) for node in (div, erf, add, mul, half))
        fused[id(half)] = helper.make_node(
            "Gelu", [x], [half.output[0]], name=f"{half.name}.gelu", domain="com.microsoft"
        )
    if fused and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    nodes = [fused.get(id(node), node) for node in graph.node if id(node) not in replaced or id(node) in fused]
    prune(graph, nodes)
    return len(fused)


def fold_into_convolutions(model: onnx.ModelProto) -> int:
    """Folds the per-channel bias Add and BatchNormalization that follow a
    bias-free convolution into its weights and bias; returns how many. A
    QDQ-quantised convolution then carries its bias inside instead of a
    float Add between a dequantise and a quantise. Element-wise float32
    arithmetic only (no reductions), so the result is the same everywhere."""
    graph = model.graph
    index = Index(graph)
    values = index.values
    initializers = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    removed, folded = set(), 0
    for conv in graph.node:
        if conv.op_type != "Conv" or len(conv.input) != 2 or conv.input[1] not in initializers:
            continue
        follower = index.only_consumer(conv.output[0])
        if follower is None or conv.output[0] in outputs:
            continue
        weight = numpy_helper.to_array(initializers[conv.input[1]]).astype(np.float32)
        channels = weight.shape[0]
        if follower.op_type == "Add":
            others = [name for name in follower.input if name != conv.output[0]]
            if len(others) != 1 or others[0] not in values:
                continue
            bias = values[others[0]].astype(np.float32)
            if bias.size != channels or bias.shape not in ((channels,), (1, channels, 1, 1)):
                continue
            bias = bias.reshape(channels)
        elif follower.op_type == "BatchNormalization" and len(follower.output) == 1:
            params = [values.get(name) for name in follower.input[1:5]]
            if any(p is None for p in params):
                continue
            gamma, beta, mean, var = (p.astype(np.float32).reshape(channels) for p in params)
            eps = np.float32(next((a.f for a in follower.attribute if a.name == "epsilon"), 1e-5))
            scale = gamma / np.sqrt(var + eps)
            weight = weight * scale.reshape((channels,) + (1,) * (weight.ndim - 1))
            bias = beta - mean * scale
        else:
            continue
        name = f"{conv.name}.folded"
        graph.initializer.append(numpy_helper.from_array(weight.astype(np.float32), f"{name}.weight"))
        graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), f"{name}.bias"))
        conv.input[1] = f"{name}.weight"
        conv.input.append(f"{name}.bias")
        conv.output[0] = follower.output[0]
        removed.add(id(follower))
        folded += 1
    nodes = [n for n in graph.node if id(n) not in removed]
    prune(graph, nodes)
    return folded


def prune(graph: onnx.GraphProto, nodes: list) -> None:
    """Sets the graph's nodes to `nodes`, dropping constants nothing uses."""
    used = {name for node in nodes for name in node.input} | {o.name for o in graph.output}
    nodes = [n for n in nodes if n.op_type != "Constant" or n.output[0] in used]
    kept = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)


def derive_layout(models: Path) -> Path:
    source, target = LAYOUT
    model = raised(onnx.load(str(models / source)))
    count = fuse_hard_swish(model)
    if count == 0:
        raise SystemExit(f"{source}: no hard-swish pattern found (another model version?)")
    onnx.checker.check_model(model)
    output = models / target
    save(model, output)
    return output


def save(model: onnx.ModelProto, output: Path) -> None:
    """Writes `model` next to `output` and renames it into place."""
    partial = output.with_suffix(".partial")
    onnx.save(model, str(partial))
    partial.replace(output)


def quantize(name: str, source: Path, ranges: Path, output: Path, reader=None) -> None:
    """Quantises `source` into `output`. With `reader`, measures the ranges
    first and writes them to `ranges`; without, reads them from there."""
    with tempfile.TemporaryDirectory(prefix="pagestream-derive.") as tmp:
        staged = Path(tmp) / "folded.onnx"
        model = raised(onnx.load(str(source)))
        fold_into_convolutions(model)
        fuse_gelu(model)
        onnx.save(model, str(staged))
        stem = [
            node.name
            for node in model.graph.node
            if name in FLOAT_STEM and node.op_type == "Conv" and node.input[0] == model.graph.input[0].name
        ]
        partial = output.with_suffix(".partial")
        quantize_static(
            str(staged),
            str(partial),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=OP_TYPES[name],
            nodes_to_exclude=stem,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=str(ranges),
        )
        partial.replace(output)


class Recorded(CalibrationDataReader):
    """Feeds back the inputs a model was given, one at a time."""

    def __init__(self, name: str, inputs: list):
        self.feeds = iter([{name: x} for x in inputs])

    def get_next(self):
        return next(self.feeds, None)


def record_inputs(pages: list, dpi: int) -> dict:
    """Runs the reference OCR on `pages`; returns model file name -> the
    input tensors it was given."""
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT / "scripts" / "reference"))
    from golden import load_page  # the reference venv's page loader
    from rapidocr import RapidOCR

    seen: dict = {}
    run = ort.InferenceSession.run

    def recording(session, outputs, feed, *args, **kwargs):
        path = Path(getattr(session, "_model_path", "") or "").name
        for value in feed.values():
            seen.setdefault(path, []).append(np.array(value, copy=True))
        return run(session, outputs, feed, *args, **kwargs)

    ort.InferenceSession.run = recording
    try:
        engine = RapidOCR(
            params={
                "Global.log_level": "warning",
                "Det.model_path": str(MODELS / QUANTIZED["det"][0]),
                "Cls.model_path": str(MODELS / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"),
                "Rec.model_path": str(MODELS / QUANTIZED["rec"][0]),
            }
        )
        for page in pages:
            path = Path(page)
            for index in range(page_count(path)):
                engine(load_page(path, dpi, index))
    finally:
        ort.InferenceSession.run = run
    return seen


def page_count(path: Path) -> int:
    if path.suffix.lower() == ".pdf":
        import pypdfium2 as pdfium

        return len(pdfium.PdfDocument(str(path)))
    if path.suffix.lower() in (".tif", ".tiff"):
        from PIL import Image

        with Image.open(path) as image:
            return image.n_frames
    return 1


def calibrate(args) -> None:
    inputs = record_inputs(args.pages, args.dpi)
    RANGES.mkdir(parents=True, exist_ok=True)
    for name, (source, target) in QUANTIZED.items():
        tensors = inputs.get(source, [])
        if not tensors:
            raise SystemExit(f"the reference pipeline never ran {source}")
        ranges = RANGES / f"{name}.json"
        ranges.unlink(missing_ok=True)
        input_name = onnx.load(str(MODELS / source)).graph.input[0].name
        quantize(name, MODELS / source, ranges, MODELS / target, Recorded(input_name, tensors))
        # stable key order and indented, for readable diffs
        ranges.write_text(json.dumps(json.loads(ranges.read_text()), sort_keys=True, indent=1) + "\n")
        print(f"{ranges.relative_to(ROOT)}: ranges from {len(tensors)} inputs")


def apply(args) -> None:
    models = Path(args.models)
    print(derive_layout(models))
    for name, (source, target) in QUANTIZED.items():
        ranges = RANGES / f"{name}.json"
        if not ranges.is_file():
            raise SystemExit(f"{ranges} is missing: run `scripts/derive_models.py calibrate` once")
        output = models / target
        quantize(name, models / source, ranges, output)
        print(output)


def main() -> None:
    # the quantiser suggests ONNX Runtime's pre-processing, which this
    # script leaves out on purpose (see `raised`)
    logging.getLogger().setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("calibrate", help="measure and commit the activation ranges")
    measure.add_argument("pages", nargs="+")
    measure.add_argument("--dpi", type=int, default=150)
    measure.set_defaults(run=calibrate)
    make = commands.add_parser("apply", help="write the derived models")
    make.add_argument("--models", default=str(MODELS))
    make.set_defaults(run=apply)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
