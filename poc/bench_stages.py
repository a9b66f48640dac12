"""Stage timings for `make bench`: preprocess of a 10,000-image test set (PNGs included), scoring of 10,000
outputs and the results report over them. Speed is measured here, never asserted in tests; record the figures in
docs/PERFORMANCE.md."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from poc.demo.datasets import write_demo_dataset
from poc.formats import cifar
from poc.preprocess import preprocess
from poc.profiles import get as get_profile
from poc.report import Inputs, write_report
from poc.scoring import postprocess
from poc.shared.aisbench import format_txt
from poc.shared.errors import atomic_file, run_main
from poc.shared.progress import Log


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Time the preprocess and postprocess stages on 10,000 images.")
    p.add_argument("--work_dir", default="bench_out/stages", help="(default: %(default)s)")
    p.add_argument("--images", type=int, default=10000, help="(default: 10000, the CIFAR-100 test set's size)")
    p.add_argument("--repeats", type=int, default=3, help="(default: 3)")
    p.add_argument("--json", default="bench_out/stages.json", help="(default: %(default)s)")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    quiet = Log(True)
    data = work / "cifar-100-python"
    per_class = -(-args.images // 100)
    if not (data / "test").is_file():
        write_demo_dataset(data, train_per_class=1, test_per_class=per_class, seed=0, log=quiet)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        n = preprocess(cifar.open_split(data / "test"), work / "bin_data", work / "img_label.txt", work / "pic",
                       args.images, log=quiet)
        times.append(time.perf_counter() - t0)
    print(f"preprocess: {n} images (bins + PNGs + labels): {min(times):.2f} s best of {args.repeats} "
          f"({', '.join(f'{t:.2f}' for t in times)})")
    # 10,000 TXT outputs in ais_bench's format, then score them
    rng = np.random.default_rng(0)
    out = work / "dst"
    out.mkdir(parents=True, exist_ok=True)
    logits = rng.normal(size=(n, 100))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for i in range(n):
        (out / f"img{i}_0.txt").write_bytes(format_txt(probs[i:i + 1].astype(np.float32)))
    score_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        postprocess(out, work / "img_label.txt", work, "result.json", log=quiet)
        score_times.append(time.perf_counter() - t0)
    print(f"postprocess: {n} TXT outputs scored: {min(score_times):.2f} s best of {args.repeats} "
          f"({', '.join(f'{t:.2f}' for t in score_times)})")
    report_times = []
    inputs = Inputs(result=work / "result.json", outputs=out, labels=work / "img_label.txt", pics=work / "pic")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        page = write_report(inputs, work / "report.html", get_profile(None), log=quiet)
        report_times.append(time.perf_counter() - t0)
    print(f"report: {n} outputs and pictures: {min(report_times):.2f} s best of {args.repeats} "
          f"({', '.join(f'{t:.2f}' for t in report_times)}), {page.stat().st_size / 1e6:.2f} MB")
    with atomic_file(args.json, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d"), "images": n, "preprocess_s": times,
                   "postprocess_s": score_times, "report_s": report_times, "report_bytes": page.stat().st_size},
                  f, indent=2)
    return 0


if __name__ == "__main__":
    run_main(main)
