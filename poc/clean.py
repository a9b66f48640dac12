"""``make clean``: remove what the toolkit wrote in the working folder, for every profile, and nothing else.

A stage's own files go by their names and naming patterns (the same patterns a re-run replaces), so a file of
yours in ``bin_data/`` or ``models/`` (your own checkpoint) stays, and so does a folder that still holds one. The
demo data sets and the benchmark's scratch folder are the toolkit's whole; the README's ``cifar-100-python`` link
goes when it points into the demo data. Prints what it removed and the space freed.

    python3 -m poc.clean [--dry_run]
"""
from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from poc import config, profiles
from poc.shared.errors import run_main

DEVICE_DIR = re.compile(r"device[0-9]+")
DEVICE_SUMMARY = re.compile(rf"device[0-9]+{re.escape(config.SUMMARY_SUFFIX)}")
README_DST = ("dst2",)  # the README's --device 0,1 example writes here
OUTPUT_DIRS = (config.DST_INT8, config.DST_FP32, config.DST_BF16, *README_DST)
# the stages' folders in a working folder and the pattern of their own files (None: named files only, see below)
STAGE_FOLDERS = ((config.BIN_DIR, config.BIN_OWNED), (config.PIC_DIR, config.PIC_OWNED),
                 (config.CALIB_DIR, config.CALIB_OWNED), *((d, config.OUTPUT_OWNED) for d in OUTPUT_DIRS),
                 (config.MODELS_DIR, None), (config.COMPARE_DIR, None))


def toolkit_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(files, folders removed whole): what the toolkit writes under ``root``, every profile's in its folder."""
    files: list[Path] = []
    whole = [root / p.demo_data_dir for p in profiles.PROFILES.values()]

    def owned(folder: Path, pattern: str) -> None:
        if folder.is_dir() and not folder.is_symlink():
            files.extend(e for e in folder.iterdir() if e.is_file() and re.fullmatch(pattern, e.name))

    for p in profiles.PROFILES.values():
        def at(rel, p=p) -> Path:  # this profile's place for one of config's paths
            return root / p.path(rel)
        whole.append(at(config.BENCH_DIR))
        for folder, pattern in STAGE_FOLDERS:
            if pattern is not None:
                owned(at(folder), pattern)
        for dst in OUTPUT_DIRS:  # a multi-device run's device{id}/ folders and summaries
            if at(dst).is_dir():
                for entry in at(dst).iterdir():
                    if DEVICE_DIR.fullmatch(entry.name):
                        owned(entry, config.OUTPUT_OWNED)
                    elif DEVICE_SUMMARY.fullmatch(entry.name):
                        files.append(entry)
            files.append(at(f"{dst}{config.SUMMARY_SUFFIX}"))
        files += [at(n) for n in (config.LABEL_FILE, config.CLASS_NAMES, config.REPORT_HTML,
                                  config.RESULT_JSON, config.RESULT_FP32_JSON,
                                  config.RESULT_BF16_JSON, config.BENCHMARK_JSON, config.BENCHMARK_PNG)]
        files.append(at(f"{config.MODELS_DIR}/{config.END2END_ONNX}"))
        files.append(at(config.COMPARE_CSV))
        if at(config.COMPARE_DIR).is_dir():  # compare.sh's {timestamp}/ folders
            whole += [e for e in at(config.COMPARE_DIR).iterdir()
                      if e.is_dir() and not e.is_symlink() and re.fullmatch(config.COMPARE_OWNED, e.name)]
        quant = p.quant_save_path
        files += [root / f"{quant}{s}" for s in (config.DEPLOY_SUFFIX, config.FAKE_QUANT_SUFFIX, config.REPORT_SUFFIX)]
        for precision in ("int8", "fp32", "bf16"):
            files += [root / f"{p.compiled(precision)}{s}" for s in (*config.COMPILED_SUFFIXES, ".bin")]  # .bin: an IR's weights
        files += [root / p.demo_checkpoint, root / f"{p.demo_checkpoint}.json"]
    return [f for f in files if f.is_file() or f.is_symlink()], [w for w in whole if w.is_dir()]


def stage_folders() -> list[str]:
    """Every profile's stage folders, then its working folder: removed once they hold nothing of yours."""
    folders = []
    for p in profiles.PROFILES.values():
        folders += [p.path(folder) for folder, _ in STAGE_FOLDERS]
        folders.append(p.workdir)
    return folders


def size_of(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return path.lstat().st_size


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Remove what the toolkit wrote here (for every profile), nothing else.")
    p.add_argument("--dry_run", action="store_true", help="only list what would be removed")
    args = p.parse_args(argv)
    root = Path(".")
    files, whole = toolkit_files(root)
    for p in profiles.PROFILES.values():  # the README's `ln -s demo-data/cifar-100-python cifar-100-python`
        link = root / p.data_dir
        if link.is_symlink() and link.resolve() == (root / p.demo_data_dir).resolve():
            files.append(link)
    freed = sum(size_of(f) for f in files + whole)
    for f in files:
        print(f"{'would remove' if args.dry_run else 'removed'} {f}")
        if not args.dry_run:
            f.unlink()
    for w in whole:
        print(f"{'would remove' if args.dry_run else 'removed'} {w}/")
        if not args.dry_run:
            shutil.rmtree(w)
    if not args.dry_run:  # the stages' folders, once they hold nothing of yours
        for folder in stage_folders():
            path = root / folder
            if path.is_dir() and not path.is_symlink() and path.resolve() != root.resolve():
                for sub in sorted((d for d in path.iterdir() if d.is_dir() and DEVICE_DIR.fullmatch(d.name)),
                                  reverse=True):
                    if not any(sub.iterdir()):
                        sub.rmdir()
                if not any(path.iterdir()):
                    path.rmdir()
    print(f"{len(files)} files and {len(whole)} folders, {freed / 1e6:.1f} MB "
          + ("would be freed" if args.dry_run else "freed") + "; anything else here is yours and stays")
    return 0


if __name__ == "__main__":
    run_main(main)
