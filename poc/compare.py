"""Accuracy debugging as the Ascend tools do it, two ways:

- per layer, ``msit debug compare``'s command line: the golden FP32 ONNX model and a compared model run on the same
  input, every tensor of both dumped and compared (msaccucmp's metrics) into ``{-o}/{timestamp}/result_{timestamp}.csv``;
  an ``.om`` goes to msit itself (or ait) with the arguments as given; on the CPU the compared model is any the toolkit
  makes (the QDQ deploy model, a compiled INT8 / FP32 ``.onnx``, an OpenVINO IR, another FP32 model);
- per output (``--golden-dir`` / ``--target-dir``): two inference output folders, image by image, into a CSV.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from poc import profiles
from poc.accuracy import dumps, metrics
from poc.accuracy.outputs import CSV_HEADER, compare_outputs
from poc.engines.pick import backend_for
from poc.formats.aipp import parse_aipp
from poc.formats.model_file import load_onnx
from poc.shared import ascend
from poc.shared.aisbench import load_npy
from poc.shared.bins import natural_key
from poc.shared.errors import InputError, OutputSet, read_regular, run_main
from poc.shared.progress import Log

MSIT_TOOLS = ("msit", "ait")  # msit, and its older name
MAX_INPUT_BYTES = 1 << 30
WORST_SHOWN = 10


# --- the input both models take --------------------------------------------------------------------------------

def input_files(spec: str) -> list[Path]:
    """``-i``: files separated by commas, or a folder (its .bin / .npy files in natural order)."""
    files = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        path = Path(part)
        if path.is_dir():
            files += sorted((f for f in path.iterdir() if f.suffix in (".bin", ".npy") and f.is_file()), key=natural_key)
        else:
            files.append(path)
    if not files:
        raise InputError("-i", f"'{spec}' names no .bin or .npy file")
    return files


def read_images(files: list[Path], per_image: tuple[int, ...], dtype: np.dtype, batch: int) -> np.ndarray:
    """A batch of ``batch`` inputs of shape ``per_image`` from the files (each one input or a whole batch), a short
    batch padded with copies of its first input as ais_bench pads; files beyond the batch are left."""
    one = int(np.prod(per_image)) * np.dtype(dtype).itemsize
    parts = []
    for f in files:
        if f.suffix == ".npy":
            arr = np.ascontiguousarray(load_npy(f, "input file", MAX_INPUT_BYTES))
            if arr.dtype != dtype:
                raise InputError(f, f"dtype {arr.dtype}, the model takes {np.dtype(dtype)}")
            raw = arr.tobytes()
        else:
            raw = read_regular(f, "input file", MAX_INPUT_BYTES)
        if not raw or len(raw) % one:
            raise InputError(f, f"{len(raw)} bytes: not a whole number of {np.dtype(dtype)} inputs "
                                f"{list(per_image)} ({one} bytes each)")
        parts.append(np.frombuffer(raw, dtype).reshape(-1, *per_image))
        if sum(len(p) for p in parts) >= batch:
            break
    x = np.concatenate(parts)[:batch]
    return np.concatenate([x, np.repeat(x[:1], batch - len(x), axis=0)]) if len(x) < batch else x


def feeds(golden_path, target_path, files: list[Path] | None, input_shape: str | None, default_shape: list[int],
          aipp_conf, seed: int):
    """({golden input: value}, {target input: value}, what the input was): the target's batch, its input as it
    takes it (uint8 NHWC for a model with AIPP: the golden model gets the AIPP stage's float output)."""
    golden = load_onnx(golden_path, load_external_data=False)
    g_inputs = [i.name for i in golden.graph.input if i.name not in {t.name for t in golden.graph.initializer}]
    g_name, g_shape = ascend.parse_input_shape(input_shape) if input_shape else (g_inputs[0], None)
    if g_name not in g_inputs:
        raise InputError(golden_path, f"has no input '{g_name}' (inputs: {', '.join(g_inputs)})")
    (t_name, t_dtype, t_shape), *more = backend_for(target_path).load(target_path).input_info()
    if more:
        raise InputError(target_path, "has more than one input; the comparison feeds single-input models")
    if None in t_shape:  # a dynamic model (the QDQ deploy model): the dims -is gives, else the profile's input
        fill = g_shape or default_shape
        if len(fill) != len(t_shape):
            raise InputError(target_path, f"input {t_name} {t_shape} has {len(t_shape)} dims, -is gives {len(fill)}")
        t_shape = [f if d is None else d for d, f in zip(t_shape, fill, strict=True)]
    if g_shape is not None and g_shape[0] != t_shape[0]:
        raise InputError("-is", f"batch {g_shape[0]} differs from the compared model's {t_shape[0]}")
    batch, per_image = t_shape[0], tuple(t_shape[1:])
    rng = np.random.default_rng(seed)
    aipp = parse_aipp(aipp_conf) if aipp_conf else None
    image = (aipp.src_h, aipp.src_w, 3) if aipp else None
    # bin_data/'s files are uint8 HWC images, one a file: the AIPP stage makes them a float model's input
    images = t_dtype == np.uint8 or (files and image and all(
        f.suffix == ".bin" and f.stat().st_size == int(np.prod(image)) for f in files))
    if images and aipp is None:
        raise InputError(target_path, "takes uint8 images (AIPP folded in): give the AIPP config (--aipp) to make "
                                      "the golden model's input")
    if images:
        x = read_images(files, image, np.uint8, batch) if files else \
            rng.integers(0, 256, (batch, *image), dtype=np.uint8)
        x_t, x_g = (x, aipp.apply(x)) if t_dtype == np.uint8 else (aipp.apply(x),) * 2
        what = f"{min(len(files), batch)} of {len(files)} input images" if files else f"random uint8 images (seed {seed})"
    else:
        x_t = read_images(files, per_image, np.dtype(t_dtype), batch) if files else \
            rng.standard_normal((batch, *per_image)).astype(t_dtype)
        x_g = x_t
        what = f"input files {files[0]} ..." if files else f"a random normal input (seed {seed})"
    if tuple(x_t.shape[1:]) != per_image:
        raise InputError(target_path, f"takes {list(per_image)} per image; the AIPP config {aipp_conf} makes "
                                      f"{list(x_t.shape[1:])}")
    if g_shape is not None and list(x_g.shape) != g_shape:
        raise InputError("-is", f"{g_shape} disagrees with the compared model's input, which gives the golden model "
                                f"{list(x_g.shape)}")
    return {g_name: x_g}, {t_name: x_t}, f"{what}, batch {batch}"


# --- per layer -------------------------------------------------------------------------------------------------

def compare_layers(golden_path, target_path, golden_feed, target_feed):
    """msit's result rows, one per tensor of the compared model in its order; and both models' tensors."""
    golden = dumps.onnx_tensors(golden_path, golden_feed)
    target = [t for t in dumps.model_tensors(target_path, target_feed) if t.op_type != "Input"]
    pairs = dumps.matched(target, golden)
    if not any(g is not None for _, g in pairs):
        raise InputError(target_path, f"shares no tensor with {golden_path}: it is not made from that model")
    # the metrics of each pair on the cores side by side (numpy lets go of the interpreter in its loops)
    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        measured = list(pool.map(lambda pair: metrics.compare(pair[0].data, pair[1].data) if pair[1] else None, pairs))
    rows = []
    for index, ((t, g), result) in enumerate(zip(pairs, measured, strict=True)):
        shape = "[" + ",".join(str(d) for d in t.data.shape) + "]"
        if g is None:
            values = {a: metrics.NAN for a in metrics.ALGORITHMS}
            later = next((t2 for t2, g2 in pairs[index + 1:]
                          if g2 is not None and dumps.base_name(t2.name) == dumps.base_name(t.name)), None)
            reason = (f"part of a fused op: compared at its last tensor ({later.node})" if later
                      else "no tensor of the golden model corresponds")
        else:
            values, reason = result
        rows.append([str(index), t.op_type, t.node, t.dtype, metrics.NAN, g.node if g else metrics.NAN,
                     g.dtype if g else metrics.NAN, f"{t.node}:output:{t.output_index}", shape,
                     *(values[a] for a in metrics.ALGORITHMS), reason, "NO" if g else "YES"])
    return rows, golden, target


def print_layers(rows: list[list[str]], log: Log) -> tuple[str, float] | None:
    """The worst layers by cosine, and the first below msit's 0.99."""
    table = [dict(zip(metrics.HEADER, r, strict=True)) for r in rows]
    layers = metrics.cosine_rows(table)
    worst = sorted(range(len(layers)), key=lambda k: layers[k][1])[:WORST_SHOWN]
    log(f"{len(layers)} of {len(rows)} tensors compared; the worst by cosine:")
    for k in worst:
        log(f"  {layers[k][1]:.6f}  {layers[k][0]}")
    first = metrics.first_below(layers)
    print(f"first operator below cosine {metrics.COSINE_FLOOR}: "
          + (f"{first[0]} ({first[1]:.6f})" if first else "none"), flush=True)
    return first


def per_layer(args, log: Log) -> int:
    if str(args.om_model).endswith(".om") or ascend.forced_backend() == "ascend":
        tool = next((t for t in MSIT_TOOLS if ascend.on_path(t)), None)
        backend = ascend.choose("msit", tool is not None, log)
        if backend == "ascend":
            ascend.run_tool([tool or "msit", "debug", "compare", *args.argv], log)
            return 0
        raise InputError(args.om_model, "an .om runs on the NPU: msit (or ait) compares it; on the CPU give the "
                                        "compiled .onnx or .xml")
    profile = profiles.get(args.profile)
    aipp = args.aipp if args.aipp is not None else str(profile.aipp_conf)
    files = input_files(args.input) if args.input else None
    golden_feed, target_feed, what = feeds(args.golden_model, args.om_model, files, args.input_shape,
                                           ascend.parse_input_shape(profile.input_shape)[1], aipp or None, args.seed)
    log(f"golden {args.golden_model} vs {args.om_model} on {what}")
    stamp = time.strftime("%Y%m%d%H%M%S")
    folder = Path(args.output) / stamp
    inputs = {"-gm": args.golden_model, "-om": args.om_model,
              **{f"-i {part}": part.strip() for part in (args.input or "").split(",") if part.strip()}}
    if Path(args.om_model).suffix == ".xml":
        inputs["-om (weights)"] = Path(args.om_model).with_suffix(".bin")
    outputs = OutputSet({"-o": folder}, inputs)  # an output over an input is refused here, before the work
    rows, golden, target = compare_layers(args.golden_model, args.om_model, golden_feed, target_feed)
    with outputs:
        out = outputs.folder(folder, r"result_[0-9]+\.csv|dump_data")
        with open(out / f"result_{stamp}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(metrics.HEADER)
            writer.writerows(rows)
        if args.dump:
            dumps.save_dumps(golden, out / "dump_data" / "onnx")
            dumps.save_dumps(target, out / "dump_data" / "target")
    log(f"wrote {folder / f'result_{stamp}.csv'}" + (f" and the dumps in {folder / 'dump_data'}" if args.dump else ""))
    print_layers(rows, log)
    return 0


# --- per output ------------------------------------------------------------------------------------------------

def _some(names: list[str]) -> str:
    return f"{len(names)}" + (f" ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''})" if names else "")


def per_output(args, log: Log) -> int:
    rows = compare_outputs(args.golden_dir, args.target_dir, args.labels)
    out = Path(args.output or "compare_outputs.csv")
    inputs = {"--golden-dir": args.golden_dir, "--target-dir": args.target_dir, "--labels": args.labels}
    with OutputSet({"-o": out}, inputs) as outputs, open(outputs.file(out), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        writer.writerows(r.csv() for r in rows)
    finite = [r for r in rows if np.isfinite(r.cosine)]
    agree = sum(r.agree for r in rows) / len(rows) * 100
    mean_cos = np.mean([r.cosine for r in finite]) if finite else float("nan")
    max_abs = max((r.max_abs for r in finite), default=float("nan"))
    print(f"{len(rows)} images: top-1 agreement {agree:.2f} %, mean cosine {mean_cos:.6f}, "
          f"max absolute error {max_abs:.6f}" + (f"; {len(rows) - len(finite)} with NaN or Inf" if len(finite) < len(rows)
                                                 else ""))
    if any(r.label is not None for r in rows):
        only_golden = [r.image for r in rows if r.label is not None and r.golden_top1 == r.label != r.target_top1]
        only_target = [r.image for r in rows if r.label is not None and r.target_top1 == r.label != r.golden_top1]
        print(f"right in the golden run only: {_some(only_golden)}; right in the compared run only: {_some(only_target)}")
    log(f"the {min(WORST_SHOWN, len(rows))} worst images by cosine:")
    for r in sorted(rows, key=lambda r: r.cosine if np.isfinite(r.cosine) else -2)[:WORST_SHOWN]:
        log(f"  {r.image:<12} cosine {r.cosine:.6f}  top-1 {r.golden_top1} vs {r.target_top1}"
            + (f"  {r.note}" if r.note else ""))
    log(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="compare.sh", description="Accuracy comparison. Per layer (msit debug compare's flags): -gm GOLDEN.onnx "
        "-om MODEL -o OUT. Per output: --golden-dir DIR --target-dir DIR [--labels img_label.txt].")
    p.add_argument("-gm", "--golden-model", dest="golden_model", help="the golden FP32 ONNX model (end2end.onnx)")
    p.add_argument("-om", "--om-model", dest="om_model",
                   help="the compared model: .om (msit), or on the CPU a compiled .onnx / .xml or any ONNX model")
    p.add_argument("-i", "--input", default=None, help="input .bin/.npy files, comma-separated, or a folder of them "
                                                      "(bin_data/); none: a seeded random input, as msit does")
    p.add_argument("-is", "--input-shape", dest="input_shape", default=None,
                   help="the golden model's input, NAME:N,C,H,W (default: its input at the compared model's batch)")
    p.add_argument("-o", "--output", default=None,
                   help="per layer: the folder for {timestamp}/result_{timestamp}.csv (default: ./compare); per output: "
                        "the CSV file (default: ./compare_outputs.csv)")
    p.add_argument("--dump", action="store_true", help="per layer: also write every tensor as .npy")
    p.add_argument("--aipp", default=None, help="per layer, CPU: the AIPP config that turns a compiled model's uint8 "
                                                "input into the golden model's (default: the profile's)")
    profiles.add_argument(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (default: 0)")
    p.add_argument("--golden-dir", dest="golden_dir", default=None, help="per output: the reference outputs (dst_fp32/)")
    p.add_argument("--target-dir", dest="target_dir", default=None, help="per output: the compared outputs (dst/)")
    p.add_argument("--labels", default=None, help="per output: img_label.txt, to say which side gets which image right")
    p.add_argument("--quiet", action="store_true", help="no log lines (the summary lines still print)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = p.parse_known_args(argv)
    args.argv = argv
    log = Log(args.quiet, "compare")
    if args.golden_dir or args.target_dir:
        if not (args.golden_dir and args.target_dir) or args.golden_model or args.om_model:
            p.error("per output: --golden-dir and --target-dir, both, and no -gm / -om")
        if unknown:
            p.error(f"unrecognized arguments: {' '.join(unknown)}")
        return per_output(args, log)
    if not (args.golden_model and args.om_model):
        p.error("per layer: -gm GOLDEN.onnx and -om MODEL (or --golden-dir and --target-dir per output)")
    if unknown and not str(args.om_model).endswith(".om"):
        p.error(f"unrecognized arguments: {' '.join(unknown)} (msit's other flags are passed on for an .om only)")
    args.output = args.output or "./compare"
    return per_layer(args, log)


if __name__ == "__main__":
    run_main(main)
