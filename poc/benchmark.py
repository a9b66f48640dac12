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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poc import profiles, runner
from poc.compile import compile_cpu
from poc.config import (
    AIPP_CFG,
    BENCH_DIR,
    BENCHMARK_JSON,
    BENCHMARK_PNG,
    END2END_ONNX,
    IMAGE_CHANNELS,
    INPUT_NAME,
    MODELS_DIR,
    compiled_model,
)
from poc.engines.base import InFlight, input_spec
from poc.engines.openvino import native_bf16
from poc.engines.pick import ENGINES, backend_for, compiled_path
from poc.formats.model_file import same_source
from poc.perf.cpu_rates import macs_per_image, probes
from poc.perf.layer_profile import print_profile
from poc.perf.layer_profile import profile as profile_layers
from poc.runner import RunOptions
from poc.shared import aisbench, ascend
from poc.shared.cpu import cpuinfo
from poc.shared.errors import InputError, atomic_file, run_main
from poc.shared.progress import Log


def row(st: dict, batch: int, rounds: list[float] | None = None) -> dict:
    """A table row from the runner's compute-time statistics and, when timed in rounds, each round's images/s: the
    spread is over rounds (a round's runs back to back), not single runs, whose times only add up when batches
    overlap in the engine."""
    out = {"batch": batch, "throughput": 1000 * batch / st["mean"], "latency_ms_mean": st["mean"],
           "latency_ms_p50": st["median"], "latency_ms_p99": st["percentile(99%)"], "loops": st["count"]}
    if rounds:
        out.update(throughput_rounds=[round(r, 2) for r in rounds], throughput_min=min(rounds),
                   throughput_max=max(rounds), throughput_iqr=[float(q) for q in np.percentile(rounds, [25, 75])])
    return out


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


@dataclass
class Timed:
    """One model's runs in the alternating rounds: each run's milliseconds, its batch, and each round's (runs,
    milliseconds back to back)."""
    ms: list[float]
    batch: int
    rounds: list[tuple[int, float]]

    def round_rates(self, per_run: float) -> list[float]:
        """``per_run`` (images, multiply-adds) per second in each round."""
        return [per_run * n * 1000 / total for n, total in self.rounds if total > 0]


def interleaved(loaded: dict, loop: int, block: int, log: Log) -> dict[str, Timed]:
    """Time ``loop`` runs of each loaded (backend, feed, batch), alternating blocks of ``block`` runs (each after
    ``SETTLE_RUNS`` untimed ones, in a new order every round), so that every model sees the same stretches
    of this machine's drifting speed."""
    timed = {name: Timed([], batch, []) for name, (_, _, batch) in loaded.items()}
    done, order, rng = 0, list(loaded.items()), np.random.default_rng(0)
    bar = log.bar(total=loop * len(loaded), desc="interleaved runs", unit="run")
    while done < loop:
        n = min(block, loop - done)
        for name, (backend, feed, _) in order:
            for _ in range(SETTLE_RUNS):
                backend.predict(feed)
            queued = InFlight(backend)  # as the runner runs them: the next batch queued behind the one ahead
            for _ in range(n):
                queued.submit(feed)
            queued.collect_all()
            timed[name].ms.extend(queued.times)
            timed[name].rounds.append((n, sum(queued.times)))
            bar.update(n)
        done += n
        # a new order every round (seeded): a model that always followed the same one would carry that one's
        # after-effects (a rotation keeps every model's predecessor, which measurably skewed a row: docs/PERFORMANCE.md)
        order = [order[i] for i in rng.permutation(len(order))]
    bar.close()
    return timed


def compiled_for_batch(source, batch: int, out_dir: Path, aipp, engine: str = "onnxruntime",
                       precision_mode: str | None = None, *, hw: int) -> Path:
    """``source`` compiled for ``batch`` on ``engine``, kept in ``out_dir`` and re-made when the source is newer."""
    tag = "" if engine == "onnxruntime" and precision_mode is None else f"_{engine}_{precision_mode or 'default'}"
    out = out_dir / f"{Path(source).stem}{tag}_bs{batch}"
    compiled = compiled_path(out, engine)
    if not compiled.is_file() or compiled.stat().st_mtime < Path(source).stat().st_mtime:
        compile_cpu(source, out, f"{INPUT_NAME}:{batch},{IMAGE_CHANNELS},{hw},{hw}", aipp, log=Log(True),
                    engine=engine, precision_mode=precision_mode)
    return compiled


def engine_rows(engines, main_engine: str, int8_source, fp32_source, aipp, work: Path, log: Log,
                batch: int, hw: int) -> dict:
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
            rows[f"{engine} {precision}"] = (compiled_for_batch(source, batch, work, aipp, engine, mode, hw=hw),
                                            engine, precision)
        if engine == "openvino":  # the yardstick: OpenVINO on the QDQ deploy model as it is (float input, no AIPP)
            rows["openvino int8 (deploy model, no AIPP)"] = (
                compiled_for_batch(int8_source, batch, work / "no_aipp", None, engine, None, hw=hw), engine, "int8")
    return rows


def cpu_name() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def plotting():
    """matplotlib (only a sweep plots, and it takes a second to load)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot(sweep: dict, title: str, path: Path) -> None:
    """Images/s by batch size, a line per engine and precision, each with its band (min-max over the rounds)."""
    plt = plotting()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, rows in sweep.items():
        xs = [r["batch"] for r in rows]
        line, = ax.plot(xs, [r["throughput"] for r in rows], marker="o", label=name_of(name))
        # the spread over the rounds: one fast or slow stretch of the machine must not read as an effect
        ax.fill_between(xs, [r["throughput_min"] for r in rows], [r["throughput_max"] for r in rows],
                        color=line.get_color(), alpha=0.15)
    first = next(iter(sweep.values()))[0]
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s (CPU)")
    ax.set_title(f"{title}, compiled with AIPP\n{first['loops']} runs per point in {len(first['throughput_rounds'])} "
                 "rounds; band = min-max over the rounds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def name_of(key: str) -> str:
    """A row's label: "onnxruntime INT8", "openvino BF16 (...)"."""
    engine, _, rest = key.partition(" ")
    precision, _, note = rest.partition(" ")
    return f"{engine} {precision.upper()}" + (f" {note}" if note else "")


def timed_rows(rows: dict, args, log: Log) -> tuple[dict[str, Timed], list]:
    """Every row's model and the CPU's rate probes, timed in the same alternating rounds (so they see the same
    drift); returns the timings and the probes."""
    loaded = {name: load_timed(path, args.warmup_count) for name, (path, _, _) in rows.items()}
    with tempfile.TemporaryDirectory(prefix="poc-peak-") as tmp:
        chosen = probes(sorted({engine for _, engine, _ in rows.values()}), tmp) if args.peaks else []
        log(f"backend: cpu; {cpu_name()}; {len(rows)} models ({', '.join(rows)})"
            + (f" and {len(chosen)} rate probes" if chosen else "") + f"; {args.loop} runs each, alternating blocks "
            f"of {args.block}")
        timed = interleaved({**loaded, **{p.name: (p.backend, p.feed, 1) for p in chosen}}, args.loop, args.block,
                            log)
    return timed, chosen


def table(rows: dict, timed: dict[str, Timed], batchsize: int, gmac: float | None, log: Log) -> dict:
    """The table's rows: throughput (all runs), its spread over the rounds, latency; GMAC/s where the network's
    multiply-adds are known."""
    result = {}
    for name, (path, engine, precision) in rows.items():
        t = timed[name]
        batch = t.batch
        if batchsize != batch:  # as in ais_bench, --batchsize is the batch the throughput is computed with
            log(f"{name}: --batchsize {batchsize} differs from the model's batch {batch}; the throughput uses "
                f"{batchsize}, as ais_bench's does")
            batch = batchsize
        result[name] = {"model": str(path), "engine": engine, "precision": precision,
                        **row(aisbench.stats(t.ms), batch, t.round_rates(batch))}
        if gmac:
            result[name]["gmac_per_s"] = result[name]["throughput"] * gmac
    return result


def cpu_limits(chosen: list, timed: dict[str, Timed], result: dict, gmac: float | None) -> dict:
    """The CPU's multiply-add rate per precision (GMAC/s): the best round of any engine's probe, or of a network
    row where that round ran faster (the silicon did it, so it is within the limit); so no row reads above 100 %.
    Returns {precision: {"gmac_per_s", "by", "probe_rounds": {engine: [GMAC/s per round]}}}."""
    limits: dict[str, dict] = {}
    for p in chosen:
        per_round = [r / 1e9 for r in timed[p.name].round_rates(p.macs)]
        if not per_round:
            continue
        lim = limits.setdefault(p.precision, {"gmac_per_s": 0.0, "by": "", "probe_rounds": {}})
        lim["probe_rounds"][p.engine] = [round(r, 1) for r in per_round]
        if max(per_round) > lim["gmac_per_s"]:
            lim.update(gmac_per_s=max(per_round), by=f"{p.engine} probe ({p.op})")
    for name, r in result.items():
        lim = limits.get(r["precision"])
        if lim and gmac and r.get("throughput_max", 0) * gmac > lim["gmac_per_s"]:
            lim.update(gmac_per_s=r["throughput_max"] * gmac, by=f"the {name} row's best round")
    for r in result.values():
        if gmac and r["precision"] in limits:
            r["of_cpu_rate"] = r["gmac_per_s"] / limits[r["precision"]]["gmac_per_s"]
    return limits


def speedups(result: dict) -> dict[str, float]:
    """INT8 over FP32 images/s per engine, from each engine's own compiled pair (the AIPP models)."""
    out = {}
    for engine in dict.fromkeys(r["engine"] for r in result.values()):
        pair = {r["precision"]: r for name, r in result.items() if r["engine"] == engine and "(" not in name}
        if "int8" in pair and "fp32" in pair:
            out[engine] = pair["int8"]["throughput"] / pair["fp32"]["throughput"]
    return out


def print_table(result: dict, profile, limits: dict, gmac: float | None, gains: dict) -> None:
    print(f"\n{'engine':<12} {'precision':<9} {'batch':>5} {'img/s':>8} {'rounds min-max':>15} {'GMAC/s':>7} "
          f"{'of CPU rate':>11} {'p50 ms':>7} {'p99 ms':>7}")
    for name, r in sorted(result.items(), key=lambda kv: (kv[1]["precision"], -kv[1]["throughput"])):
        frac = f"{r['of_cpu_rate'] * 100:>10.0f}%" if "of_cpu_rate" in r else f"{'-':>11}"
        spread = f"{r['throughput_min']:.0f}-{r['throughput_max']:.0f}" if "throughput_min" in r else "-"
        note = f"  {name[name.index('('):]}" if "(" in name else ""
        print(f"{r['engine']:<12} {r['precision'].upper():<9} {r['batch']:>5} {r['throughput']:>8.1f} {spread:>15} "
              f"{r.get('gmac_per_s', float('nan')):>7.0f} {frac} {r['latency_ms_p50']:>7.2f} "
              f"{r['latency_ms_p99']:>7.2f}{note}")
    for key, a in profile.published_npu.items():  # the Ascend figures published for this model, if any
        print(f"{'310P3':<12} {key.upper():<9} {a['batch']:>5} {a['throughput']:>8.0f} {'-':>15} {'-':>7} {'-':>11} "
              f"{'-':>7} {'-':>7}  (published)")
    print("img/s: all runs; rounds min-max: the slowest and fastest round of back-to-back runs (models and probes "
          "take turns round by round)")
    if limits:
        print("the CPU's multiply-add rates (GMAC/s; the best round of the faster of a large matrix multiply and 1x1 "
              "convolution per engine, or a network's where it ran faster): "
              + "; ".join(f"{p.upper()} {lim['gmac_per_s']:.0f} ({lim['by']}; probe rounds "
                          + ", ".join(f"{e} {min(v):.0f}-{max(v):.0f}" for e, v in lim["probe_rounds"].items()) + ")"
                          for p, lim in sorted(limits.items())))
        if gmac:
            print(f"{gmac:.3f} GMAC per image: the CPU's limits are "
                  + ", ".join(f"{p.upper()} {lim['gmac_per_s'] / gmac:.0f} img/s" for p, lim in sorted(limits.items())))
    published = profile.published_npu
    npu = (f" (310P3 published: {published['int8']['throughput'] / published['fp16']['throughput']:.2f}x INT8 over "
           "FP16)" if {"int8", "fp16"} <= set(published) else "")
    print("INT8 speed-up over FP32 on the CPU: " + ", ".join(f"{e} {g:.2f}x" for e, g in gains.items()) + npu)


def print_e2e(e: dict, pairs: int) -> None:
    print(f"end to end over {e['files']} files (read, infer, write TXT): {e['e2e_images_per_s']:.1f} img/s = "
          f"{e['ratio_to_pure'] * 100:.0f} % of pure inference over as many batches right after it "
          f"(median of {pairs} pairs: {e['ratio_runs']})")
    if "writer" in e["io_cpu_s"]:  # what the I/O cost the engine's cores: the kernel's part is file creation
        cpu = {k: v["user"] + v["kernel"] for k, v in e["io_cpu_s"].items()}
        print(f"  CPU time of that run's I/O threads: writer {cpu['writer']:.2f} s "
              f"({e['io_cpu_s']['writer']['kernel']:.2f} s in the kernel), reader {cpu.get('reader', 0):.2f} s")


def sweep_plan(engines: list[str], int8_source, fp32_source) -> dict:
    """The sweep's lines: {"onnxruntime int8": (source, engine, precision mode)}, every engine at every precision
    it runs (BF16 on OpenVINO where the CPU computes it natively)."""
    plan = {}
    for engine in engines:
        plan[f"{engine} int8"] = (int8_source, engine, None)
        if engine == "openvino" and native_bf16():
            plan[f"{engine} bf16"] = (fp32_source, engine, "force_fp16")
        plan[f"{engine} fp32"] = (fp32_source, engine, None if engine == "onnxruntime" else "force_fp32")
    return plan


def batch_sweep(batches: list[int], plan: dict, args, hw: int, log: Log) -> dict:
    """Each line of the plan at each batch size, all of a batch size's models in the same alternating rounds."""
    sweep: dict[str, list] = {name: [] for name in plan}
    work = Path(args.work_dir)
    for b in log.bar(batches, desc="batch sweep", unit="batch size"):
        loaded = {name: load_timed(compiled_for_batch(src, b, work, args.aipp, engine, mode, hw=hw), args.warmup_count)
                  for name, (src, engine, mode) in plan.items()}
        for name, t in interleaved(loaded, args.sweep_loop, args.block, Log(True)).items():
            sweep[name].append(row(aisbench.stats(t.ms), t.batch, t.round_rates(t.batch)))
    return sweep


def print_sweep(sweep: dict) -> None:
    names = list(sweep)
    print(f"\n{'batch':>5} " + " ".join(f"{name_of(n):>18}" for n in names) + "   (img/s)")
    for i, first in enumerate(sweep[names[0]]):
        print(f"{first['batch']:>5} " + " ".join(f"{sweep[n][i]['throughput']:>18.1f}" for n in names))


def main(argv=None) -> int:
    default = profiles.get(None)  # the help texts name the default profile's files
    p = argparse.ArgumentParser(prog="benchmark.sh", description="Stage 8: pure-inference throughput. ais_bench on "
                                ".om models; on the CPU the INT8 and FP32 compiled models compared.")
    profiles.add_argument(p)
    p.add_argument("--model", default=None, help=f"model to time (default: {default.compiled('int8')}.om or .onnx, whichever "
                                                 "the compile stage wrote last; the profile's name)")
    p.add_argument("--fp32_model", default=None,
                   help=f"CPU: FP32 model compared (default: {default.compiled('fp32')}.onnx, or the profile's)")
    p.add_argument("--loop", type=int, default=100, help="timed runs per model (default: 100)")
    p.add_argument("--batchsize", type=int, default=None, help="the batch in the throughput figures (default: the profile's, 24)")
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
                   help=f"for the sweep's compiles (default: the profile's, {profiles.get(None).deploy_model})")
    p.add_argument("--fp32_source", default=None,
                   help=f"for the sweep's compiles (default: the profile's, {MODELS_DIR}/{END2END_ONNX})")
    p.add_argument("--aipp", default=None, help=f"for the other engine's and the sweep's compiles (default: the "
                                                f"profile's; ./{AIPP_CFG}, else the one that ships with the scripts)")
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
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1")
    if args.warmup_count < 0 or args.repeats < 0:
        p.error("--warmup_count and --repeats must be 0 or more")
    log = Log(args.quiet, "benchmark")
    profile = profiles.get(args.profile)
    args.batchsize = args.batchsize or profile.batch
    args.fp32_model = args.fp32_model or f"{profile.compiled('fp32')}.onnx"
    args.int8_source = args.int8_source or profile.deploy_model
    args.fp32_source = args.fp32_source or profile.path(f"{MODELS_DIR}/{END2END_ONNX}")
    args.json = args.json or profile.path(BENCHMARK_JSON)
    args.plot = args.plot or profile.path(BENCHMARK_PNG)
    args.work_dir = args.work_dir or profile.path(BENCH_DIR)
    args.aipp = args.aipp or str(profile.aipp_conf)

    model = Path(args.model) if args.model else compiled_model(profile.compiled("int8"))
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
                            Path(args.work_dir), log, profile.batch, profile.image_hw))
    same_source({f"the {name} row's model": path for name, (path, _, _) in rows.items()})

    timed, chosen = timed_rows(rows, args, log)
    gmac = (macs_per_image(args.fp32_source, INPUT_NAME, (IMAGE_CHANNELS, profile.image_hw, profile.image_hw))
            if Path(args.fp32_source).is_file() else None)
    result = table(rows, timed, args.batchsize, gmac, log)
    if not args.quiet:
        for name, r in result.items():
            print(f"{name.upper()} {r['model']}:")
            st = aisbench.stats(timed[name].ms)
            aisbench.print_summary({"NPU_compute_time": st, "throughput": r["throughput"]}, r["batch"])
    limits = cpu_limits(chosen, timed, result, gmac)
    gains = speedups(result)
    e2e_runs = e2e_pairs(model, args, log) if args.e2e_input else []
    report = {"date": time.strftime("%Y-%m-%d"), "machine": {"cpu": cpu_name(), "python": platform.python_version()},
              "profile": profile.name, "batch": result["int8"]["batch"], "loop": args.loop, "block": args.block,
              "cpu": result, "int8_speedup": result["int8"]["throughput"] / result["fp32"]["throughput"],
              "int8_speedup_by_engine": gains, "gmac_per_image": gmac,
              "cpu_rates_gmac_per_s": {p: lim["gmac_per_s"] for p, lim in limits.items()}, "cpu_limits": limits,
              "ascend_310p3_published": profile.published_npu}
    if e2e_runs:
        e2e = dict(sorted(e2e_runs, key=lambda x: x["ratio_to_pure"])[len(e2e_runs) // 2])
        e2e["ratio_runs"] = [round(x["ratio_to_pure"], 3) for x in e2e_runs]
        report["e2e_int8"] = e2e
    print_table(result, profile, limits, gmac, gains)
    if e2e_runs:
        print_e2e(report["e2e_int8"], len(e2e_runs))

    if args.layers and not Path(args.fp32_source).is_file():
        log(f"--layers: no float source model {args.fp32_source} to size the convolutions; layers left out")
    elif args.layers:
        for name, (path, _, precision) in rows.items():
            if precision == "int8" and "(" not in name:  # each engine's own INT8 model
                layers = profile_layers(path, args.fp32_source, profile.image_hw)
                report.setdefault("layers", {})[name] = layers
                print_profile(layers)

    if args.sweep:
        plan = sweep_plan(engines, args.int8_source, args.fp32_source)
        report["sweep"] = batch_sweep([int(b) for b in args.sweep.split(",")], plan, args, profile.image_hw, log)
        print_sweep(report["sweep"])
        plot(report["sweep"], profile.name, Path(args.plot))
        log(f"plot: {args.plot}")
    with atomic_file(args.json, "w") as f:
        json.dump(report, f, indent=2)
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
