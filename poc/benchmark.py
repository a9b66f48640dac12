"""Stage 8: throughput and latency. ``ais_bench --loop`` on an .om; on the CPU the compiled INT8 and FP32 models
timed in alternating blocks (a shared machine's speed drifts from minute to minute, so one run of each would make
the speed-up depend on when each ran), an optional batch-size sweep and an end-to-end run over the input files,
then a comparison table, ``benchmark.json`` and a PNG plot. It drives the compile stage and the runner.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import ascend, profiles, runner
from .backends import backend_for, cpuinfo, input_spec, native_bf16, same_source
from .compile import ENGINE_SUFFIX, ENGINES, compile_cpu
from .config import (
    AIPP_CFG,
    BATCH_SIZE,
    BENCH_DIR,
    BENCHMARK_JSON,
    BENCHMARK_PNG,
    COMPILED_FP32,
    COMPILED_INT8,
    DEPLOY_SUFFIX,
    END2END_ONNX,
    IMAGE_CHANNELS,
    IMAGE_HW,
    INPUT_NAME,
    MODELS_DIR,
    PUBLISHED_310P3,
    QUANT_SAVE_PATH,
    compiled_model,
)
from .cpu_rates import macs_per_image, probes
from .errors import InputError, atomic_file, run_main
from .layer_profile import print_profile
from .layer_profile import profile as profile_layers
from .progress import Log
from .runner import RunOptions


def row(st: dict, batch: int) -> dict:
    """A table row from the runner's compute-time statistics."""
    return {"batch": batch, "throughput": 1000 * batch / st["mean"], "latency_ms_mean": st["mean"],
            "latency_ms_p50": st["median"], "latency_ms_p99": st["percentile(99%)"], "loops": st["count"],
            "throughput_min": 1000 * batch / st["max"], "throughput_max": 1000 * batch / st["min"]}


def pure(model, loop, warmup) -> dict:
    """One solo pure-inference run through the runner."""
    s = runner.run(RunOptions(str(model), loop=loop, warmup_count=warmup, quiet=True), Log(True), show_summary=False)
    return row(s["NPU_compute_time"], s["batchsize"])


def e2e_pairs(model, args, log: Log) -> list[dict]:
    """``args.repeats`` pairs of a whole run over ``args.e2e_input`` (TXT outputs) and pure inference over as many
    batches right after it: the pair sees the same machine, so their ratio is the I/O overhead and not its drift."""
    # Each whole run writes its own new folder, and all go only after the last pair: ext4 passes over inodes freed
    # in the last minute when it allocates new ones, checking them one by one, so a run that starts right after
    # 10,000 outputs were deleted pays 1-2 s of kernel time per 10,000 files instead of 0.1 (docs/PERFORMANCE.md,
    # "Creating files"). That is the benchmark's own housekeeping, not the runner's work.
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="e2e.", dir=args.work_dir))
    pairs = []
    try:
        for r in range(args.repeats):
            log(f"end to end {r + 1}/{args.repeats}: int8 over {args.e2e_input} ...")
            opts = RunOptions(str(model), input=args.e2e_input, output=str(folder), output_dirname=f"dst{r}",
                              outfmt="TXT", warmup_count=args.warmup_count, quiet=True)
            s = runner.run(opts, Log(True), show_summary=False)
            paired = pure(model, s["NPU_compute_time"]["count"], args.warmup_count)
            pairs.append({"e2e_images_per_s": s["e2e"]["images_per_s"], "files": s["e2e"]["files"],
                          "in_run_compute_throughput": s["throughput"], "paired_pure_throughput": paired["throughput"],
                          "ratio_to_pure": s["e2e"]["images_per_s"] / paired["throughput"],
                          "io_cpu_s": s["e2e"]["io_cpu_s"]})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return pairs


def load_timed(path, warmup: int) -> tuple:
    """(backend, feed of zeros, batch) for a compiled model, warmed up."""
    # As the runner loads it (ONNX Runtime's pool threads spin between runs, which its integer matrix-multiply path
    # needs: without spinning it is far slower, docs/PERFORMANCE.md); their spinning after a model's turn ends is
    # absorbed by the next model's settling runs.
    backend = backend_for(path).load(path)
    spec = input_spec(backend, path, None)
    feed = {spec.name: np.zeros(spec.shape, spec.dtype)}
    for _ in range(warmup):
        backend.predict(feed)
    return backend, feed, spec.shape[0]


# Untimed runs at the start of each block: after another model's turn, an engine's threads and the CPU's matrix
# units take a run or two to come back up to speed (the INT8 probes' first run of a block is the slowest by far:
# docs/PERFORMANCE.md); a continuous run, which the table stands for, does not pay that.
SETTLE_RUNS = 2


def interleaved(loaded: dict, loop: int, block: int, log: Log) -> dict:
    """Time ``loop`` runs of each loaded (backend, feed, batch), alternating blocks of ``block`` runs (each after
    ``SETTLE_RUNS`` untimed ones, in a new order every round), so that every model sees the same stretches
    of this machine's drifting speed; returns {name: (per-run milliseconds, batch)}."""
    times = {name: [] for name in loaded}
    done, order, rng = 0, list(loaded.items()), np.random.default_rng(0)
    bar = log.bar(total=loop * len(loaded), desc="interleaved runs", unit="run")
    while done < loop:
        n = min(block, loop - done)
        for name, (backend, feed, _) in order:
            for _ in range(SETTLE_RUNS):
                backend.predict(feed)
            queued = runner.InFlight(backend)  # as the runner runs them: the next batch queued behind the one ahead
            for _ in range(n):
                queued.submit(feed)
            queued.collect_all()
            times[name] += queued.times
            bar.update(n)
        done += n
        # a new order every round (seeded): a model that always followed the same one would carry that one's
        # after-effects (a rotation keeps every model's predecessor, which measurably skewed a row: docs/PERFORMANCE.md)
        order = [order[i] for i in rng.permutation(len(order))]
    bar.close()
    return {name: (times[name], loaded[name][2]) for name in loaded}


def compiled_for_batch(source, batch: int, out_dir: Path, aipp, engine: str = "onnxruntime",
                       precision_mode: str | None = None, hw: int = IMAGE_HW) -> Path:
    """``source`` compiled for ``batch`` on ``engine``, kept in ``out_dir`` and re-made when the source is newer."""
    tag = "" if engine == "onnxruntime" and precision_mode is None else f"_{engine}_{precision_mode or 'default'}"
    out = out_dir / f"{Path(source).stem}{tag}_bs{batch}"
    compiled = Path(f"{out}{ENGINE_SUFFIX[engine]}")
    if not compiled.is_file() or compiled.stat().st_mtime < Path(source).stat().st_mtime:
        compile_cpu(source, out, f"{INPUT_NAME}:{batch},{IMAGE_CHANNELS},{hw},{hw}", aipp, log=Log(True),
                    engine=engine, precision_mode=precision_mode)
    return compiled


def engine_rows(engines, main_engine: str, int8_source, fp32_source, aipp, work: Path, log: Log,
                hw: int = IMAGE_HW) -> dict:
    """Rows of the engines other than the main pair's, compiled from the sources at the batch of the pair:
    {name: (path, engine, precision)}."""
    rows = {}
    for engine in engines:
        if engine == main_engine:
            continue
        if not (Path(int8_source).is_file() and Path(fp32_source).is_file()):
            log(f"{engine}: no source models ({int8_source}, {fp32_source}): its rows are left out")
            continue
        plan = [("int8", int8_source, None), ("fp32", fp32_source, "force_fp32")]
        if engine == "openvino" and native_bf16():
            plan.insert(1, ("bf16", fp32_source, "force_fp16"))
        for precision, source, mode in plan:
            rows[f"{engine} {precision}"] = (compiled_for_batch(source, BATCH_SIZE, work, aipp, engine, mode, hw),
                                            engine, precision)
        if engine == "openvino":  # the yardstick: OpenVINO on the QDQ deploy model as it is (float input, no AIPP)
            rows["openvino int8 (deploy model, no AIPP)"] = (
                compiled_for_batch(int8_source, BATCH_SIZE, work / "no_aipp", None, engine, None, hw), engine, "int8")
    return rows


def cpu_name() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def plot(sweep: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, rows in sweep.items():
        xs = [r["batch"] for r in rows]
        ax.plot(xs, [r["throughput"] for r in rows], marker="o", label=f"{name.upper()} (mean)")
        # the spread over the runs: one fast or slow stretch of the machine must not read as an effect
        ax.fill_between(xs, [r["throughput_min"] for r in rows], [r["throughput_max"] for r in rows], alpha=0.2)
    runs = next(iter(sweep.values()))[0]["loops"]
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s (CPU, ONNX Runtime)")
    ax.set_title(f"ResNet-50 CIFAR-100, compiled with AIPP: {runs} runs per point,\nband = min-max over the runs",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmark.sh", description="Stage 8: pure-inference throughput. ais_bench on "
                                ".om models; on the CPU the INT8 and FP32 compiled models compared.")
    profiles.add_argument(p)
    p.add_argument("--model", default=None, help=f"model to time (default: {COMPILED_INT8}.om or .onnx, whichever "
                                                 "the compile stage wrote last; the profile's name)")
    p.add_argument("--fp32_model", default=None, help=f"CPU: FP32 model compared (default: {COMPILED_FP32}.onnx, or the "
                                                      "profile's)")
    p.add_argument("--loop", type=int, default=100, help="timed runs per model (default: 100)")
    p.add_argument("--batchsize", type=int, default=BATCH_SIZE, help="(default: %(default)s)")
    p.add_argument("--warmup_count", type=int, default=3, help="CPU: untimed runs first (default: 3)")
    p.add_argument("--block", type=int, default=5, help="CPU: runs per model before switching to the other (default: 5)")
    p.add_argument("--repeats", type=int, default=3,
                   help="CPU, with --e2e_input: how many (whole inference run, pure inference run) pairs are timed; "
                        "the median ratio counts (default: 3)")
    p.add_argument("--sweep", nargs="?", const="1,8,16,24,32", default=None, metavar="B,B,...",
                   help="CPU: also time these batch sizes (default when given: 1,8,16,24,32)")
    p.add_argument("--sweep_loop", type=int, default=20, help="timed runs per sweep point (default: 20)")
    p.add_argument("--e2e_input", default=None, metavar="DIR",
                   help="CPU: also run the whole inference over these input files (e.g. ./bin_data) and compare "
                        "with pure inference")
    p.add_argument("--int8_source", default=None,
                   help=f"for the sweep's compiles (default: the profile's, {QUANT_SAVE_PATH}{DEPLOY_SUFFIX})")
    p.add_argument("--fp32_source", default=None,
                   help=f"for the sweep's compiles (default: the profile's, {MODELS_DIR}/{END2END_ONNX})")
    p.add_argument("--aipp", default=AIPP_CFG, help="for the sweep's compiles (default: %(default)s)")
    p.add_argument("--json", default=None, help=f"results (default: the profile's, {BENCHMARK_JSON})")
    p.add_argument("--plot", default=None,
                   help=f"throughput-by-batch plot, with --sweep (default: the profile's, {BENCHMARK_PNG})")
    p.add_argument("--work_dir", default=None,
                   help=f"sweep models and e2e outputs (default: the profile's, {BENCH_DIR})")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="CPU: engines timed side by side; the other engine's models are compiled from --int8_source "
                        "and --fp32_source into --work_dir (default: %(default)s)")
    p.add_argument("--layers", action="store_true",
                   help="CPU: also print where each engine's INT8 model spends its time, layer by layer "
                        "(python3 -m poc.layer_profile)")
    p.add_argument("--no_peaks", dest="peaks", action="store_false",
                   help="CPU: skip measuring the CPU's multiply-add rates")
    p.add_argument("--quiet", action="store_true", help="no log lines (the table still prints)")
    args = p.parse_args(argv)
    for flag in ("loop", "batchsize", "block", "sweep_loop"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1")
    if args.warmup_count < 0 or args.repeats < 0:
        p.error("--warmup_count and --repeats must be 0 or more")
    log = Log(args.quiet, "benchmark")
    profile = profiles.get(args.profile)
    names = profile.names()
    args.fp32_model = args.fp32_model or f"{names['COMPILED_FP32']}.onnx"
    args.int8_source = args.int8_source or f"{names['QUANT_SAVE_PATH']}{DEPLOY_SUFFIX}"
    args.fp32_source = args.fp32_source or profile.path(f"{MODELS_DIR}/{END2END_ONNX}")
    args.json = args.json or profile.path(BENCHMARK_JSON)
    args.plot = args.plot or profile.path(BENCHMARK_PNG)
    args.work_dir = args.work_dir or profile.path(BENCH_DIR)
    if profile.name != profiles.DEFAULT:
        args.aipp = args.aipp if args.aipp != AIPP_CFG else str(profile.aipp_conf)

    model = Path(args.model) if args.model else compiled_model(names["COMPILED_INT8"])
    if model.suffix == ".om":  # the ModelZoo's performance command
        return ascend.run_ais_bench(model, ["--model", str(model), "--loop", str(args.loop),
                                            "--batchsize", str(args.batchsize)], log)

    for path in (model, Path(args.fp32_model)):
        if not path.is_file():
            raise InputError(path, "no such model file (run pipeline.sh, or atc_convert.sh, first)")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise InputError("--engines", f"{', '.join(unknown)}: not one of {', '.join(ENGINES)}")
    same_source({"--model": model, "--fp32_model": args.fp32_model, "--int8_source": args.int8_source,
                 "--fp32_source": args.fp32_source})
    rows = {"int8": (model, backend_for(model).name(), "int8"),
            "fp32": (Path(args.fp32_model), backend_for(args.fp32_model).name(), "fp32")}
    rows.update(engine_rows(engines, rows["int8"][1], args.int8_source, args.fp32_source, args.aipp,
                            Path(args.work_dir), log, profile.image_hw))
    same_source({f"the {name} row's model": path for name, (path, _, _) in rows.items()})
    loaded = {name: load_timed(path, args.warmup_count) for name, (path, _, _) in rows.items()}
    with tempfile.TemporaryDirectory(prefix="poc-peak-") as tmp:
        # the CPU's rates are timed in the same alternating rounds as the networks, so they see the same drift
        chosen = probes(sorted({engine for _, engine, _ in rows.values()}), tmp) if args.peaks else []
        log(f"backend: cpu; {cpu_name()}; {len(rows)} models ({', '.join(rows)})"
            + (f" and {len(chosen)} rate probes" if chosen else "") + f"; {args.loop} runs each, alternating blocks "
            f"of {args.block}")
        timed = interleaved({**loaded, **{p.name: (p.backend, p.feed, 1) for p in chosen}}, args.loop, args.block,
                            log)
    rates: dict[str, dict[str, float]] = {}  # {engine: {precision: GMAC/s}}, each the median run of its probe
    for p in chosen:
        rates.setdefault(p.engine, {})[p.precision] = p.macs / float(np.median(timed[p.name][0])) / 1e6  # ms
    result = {}
    for name in rows:
        ms, batch = timed[name]
        if args.batchsize != batch:  # as in ais_bench, --batchsize is the batch the throughput is computed with
            log(f"{name}: --batchsize {args.batchsize} differs from the model's batch {batch}; the throughput uses "
                f"{args.batchsize}, as ais_bench's does")
            batch = args.batchsize
        st = runner.stats(ms)
        result[name] = {"model": str(rows[name][0]), "engine": rows[name][1], "precision": rows[name][2],
                        **row(st, batch)}
        if not args.quiet:
            print(f"{name.upper()} {rows[name][0]}:")
            runner.print_summary({"NPU_compute_time": st, "throughput": result[name]["throughput"]}, batch)
    gmac = (macs_per_image(args.fp32_source, INPUT_NAME, (IMAGE_CHANNELS, profile.image_hw, profile.image_hw))
            if Path(args.fp32_source).is_file() else None)
    cpu_rate = {}  # the CPU's rate per precision: the best engine's
    for by_precision in rates.values():
        for precision, value in by_precision.items():
            cpu_rate[precision] = max(cpu_rate.get(precision, 0.0), value)
    for r in result.values():
        if gmac:
            r["gmac_per_s"] = r["throughput"] * gmac
            if r["precision"] in cpu_rate:
                r["of_cpu_rate"] = r["gmac_per_s"] / cpu_rate[r["precision"]]
    e2e_runs = e2e_pairs(model, args, log) if args.e2e_input else []
    speedup = result["int8"]["throughput"] / result["fp32"]["throughput"]
    report = {"date": time.strftime("%Y-%m-%d"), "machine": {"cpu": cpu_name(), "python": platform.python_version()},
              "batch": result["int8"]["batch"], "loop": args.loop, "block": args.block, "cpu": result,
              "int8_speedup": speedup, "gmac_per_image": gmac, "cpu_rates_gmac_per_s": rates,
              "ascend_310p3_published": PUBLISHED_310P3}
    if e2e_runs:
        e2e = dict(sorted(e2e_runs, key=lambda x: x["ratio_to_pure"])[len(e2e_runs) // 2])
        e2e["ratio_runs"] = [round(x["ratio_to_pure"], 3) for x in e2e_runs]
        report["e2e_int8"] = e2e

    print(f"\n{'engine':<12} {'precision':<9} {'batch':>5} {'img/s':>9} {'GMAC/s':>8} {'of CPU rate':>11} "
          f"{'p50 ms':>8} {'p99 ms':>8}")
    for _name, r in sorted(result.items(), key=lambda kv: (kv[1]["precision"], -kv[1]["throughput"])):
        frac = f"{r['of_cpu_rate'] * 100:>10.0f}%" if "of_cpu_rate" in r else f"{'-':>11}"
        note = f"  {_name[_name.index('('):]}" if "(" in _name else ""
        print(f"{r['engine']:<12} {r['precision'].upper():<9} {r['batch']:>5} {r['throughput']:>9.1f} "
              f"{r.get('gmac_per_s', float('nan')):>8.0f} {frac} {r['latency_ms_p50']:>8.2f} {r['latency_ms_p99']:>8.2f}"
              f"{note}")
    for key, a in (PUBLISHED_310P3 if profile.name == profiles.DEFAULT else {}).items():  # the ModelZoo model's
        print(f"{'310P3':<12} {key.upper():<9} {a['batch']:>5} {a['throughput']:>9.0f} {'-':>8} {'-':>11} {'-':>8} "
              f"{'-':>8}  (published)")
    if rates:
        print("the CPU's multiply-add rates (GMAC/s; the faster of a large matrix multiply and 1x1 convolution on "
              "the same engine and threads, timed in the same rounds as the models; the best engine's is the CPU's): "
              + "; ".join(f"{e} " + ", ".join(f"{p.upper()} {v:.0f}" for p, v in by.items()) for e, by in rates.items()))
        if gmac:
            print(f"{gmac:.3f} GMAC per image: the CPU's limits are "
                  + ", ".join(f"{p.upper()} {v / gmac:.0f} img/s" for p, v in sorted(cpu_rate.items())))
    print(f"INT8 speed-up on the CPU: {speedup:.2f}x (310P3 published: "
          f"{PUBLISHED_310P3['int8']['throughput'] / PUBLISHED_310P3['fp16']['throughput']:.2f}x INT8 over FP16)")
    if e2e_runs:
        e = report["e2e_int8"]
        print(f"end to end over {e['files']} files (read, infer, write TXT): {e['e2e_images_per_s']:.1f} img/s = "
              f"{e['ratio_to_pure'] * 100:.0f} % of pure inference over as many batches right after it "
              f"(median of {len(e2e_runs)} pairs: {e['ratio_runs']})")
        if "writer" in e["io_cpu_s"]:  # what the I/O cost the engine's cores: the kernel's part is file creation
            cpu = {k: v["user"] + v["kernel"] for k, v in e["io_cpu_s"].items()}
            print(f"  CPU time of that run's I/O threads: writer {cpu['writer']:.2f} s "
                  f"({e['io_cpu_s']['writer']['kernel']:.2f} s in the kernel), reader {cpu.get('reader', 0):.2f} s")

    if args.layers and not Path(args.fp32_source).is_file():
        log(f"--layers: no float source model {args.fp32_source} to size the convolutions; layers left out")
    elif args.layers:
        for name, (path, _, precision) in rows.items():
            if precision == "int8" and "(" not in name:  # each engine's own INT8 model
                layers = profile_layers(path, args.fp32_source, profile.image_hw)
                report.setdefault("layers", {})[name] = layers
                print_profile(layers)

    if args.sweep:
        batches = [int(b) for b in args.sweep.split(",")]
        sweep = {"int8": [], "fp32": []}
        work = Path(args.work_dir)
        for b in log.bar(batches, desc="batch sweep", unit="batch size"):
            paths = {name: compiled_for_batch(src, b, work, args.aipp, hw=profile.image_hw)
                     for name, src in (("int8", args.int8_source), ("fp32", args.fp32_source))}
            loaded = {name: load_timed(path, args.warmup_count) for name, path in paths.items()}
            for name, (ms, batch) in interleaved(loaded, args.sweep_loop, args.block, Log(True)).items():
                sweep[name].append(row(runner.stats(ms), batch))
        report["sweep"] = sweep
        print(f"\n{'batch':>5} {'INT8 img/s':>11} {'FP32 img/s':>11} {'speed-up':>9}")
        for a, b in zip(sweep["int8"], sweep["fp32"], strict=False):
            print(f"{a['batch']:>5} {a['throughput']:>11.1f} {b['throughput']:>11.1f} {a['throughput'] / b['throughput']:>8.2f}x")
        plot(sweep, Path(args.plot))
        log(f"plot: {args.plot}")
    with atomic_file(args.json, "w") as f:
        json.dump(report, f, indent=2)
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
