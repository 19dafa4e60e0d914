"""The `tinymnist` command line. Each subcommand parses flags, calls library functions that return
values, and prints them. User errors become one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tinymnist.errors import SettingError, UserError, flag_name


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="directory with the MNIST IDX files (default: $TINYMNIST_DATA, "
                        "else ~/.cache/tinymnist/mnist; downloaded there when missing)")


def _add_device(parser: argparse.ArgumentParser) -> None:
    from tinymnist.backends.device import DEVICE_CHOICES

    parser.add_argument("--device", default="auto", metavar="|".join(DEVICE_CHOICES),
                        help="where to compute: auto = CUDA if available, else MPS, else CPU; also cuda:N (default: auto)")


def _config_fields() -> dict[str, Any]:
    """TrainConfig's fields by name (dataclasses.Field, with each one's help in its metadata)."""
    import dataclasses

    from tinymnist.training.config import TrainConfig

    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One `tinymnist train` flag per TrainConfig field, its name, type, choices and help taken from the
    field. A flag left out stays None, so that only the flags given override the model's recipe, a
    --config file or the resumed run's value."""
    import typing

    from tinymnist.training.config import CHOICES, TrainConfig

    defaults, types = TrainConfig(), typing.get_type_hints(TrainConfig)
    for name, f in _config_fields().items():
        meta, default, kind = f.metadata, getattr(defaults, name), types[name]
        flag = _flag(name)
        options: dict[str, Any] = {"dest": name, "default": None, "help": f"{meta['help']} (default: {default})"}
        if kind is bool:  # a switch that turns the default off; its help says what the default is
            p.add_argument(flag, action="store_const", const=not default, **{**options, "help": meta["help"]})
            # and its opposite, for a model's recipe or a --config file that turned it off
            p.add_argument(_opposite(name, flag), action="store_const", const=default, dest=name, default=None,
                           help="the opposite of the switch above, for a model's recipe or a --config file "
                           "that sets it")
            continue
        if typing.get_origin(kind) is tuple:
            options.update(nargs=len(typing.get_args(kind)), type=typing.get_args(kind)[0])
        elif typing.get_origin(kind) is dict:
            options.update(type=_json_arg)
        else:
            options.update(type=kind)
        if name in CHOICES:
            options.update(choices=CHOICES[name])
        if "metavar" in meta:
            options["metavar"] = meta["metavar"]
        p.add_argument(flag, **options)


def _opposite(name: str, flag: str) -> str:
    """The flag that sets a switch field back to its default: --augment for --no-augment."""
    plain = flag_name(name)
    return plain if flag != plain else "--no-" + plain[2:]


def _int_between(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer from low to high, else "'TEXT' is not WHAT"."""
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return int(text)
    return parse


def _fraction_above_half(text: str) -> float:
    """An argparse type: a number above 0.5 and at most 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.5 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0.5 and at most 1")
    return value


def _json_arg(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


# ---------------------------------------------------------------------------------------------
# tinymnist data


def cmd_data(args: argparse.Namespace) -> int:
    from tinymnist.analysis import plots
    from tinymnist.data.mnist import class_counts, load_mnist, pixel_stats

    data = load_mnist(args.data_dir)
    out = _out_dir(args.out)
    train_counts, test_counts = class_counts(data.train_labels), class_counts(data.test_labels)
    mean, std = pixel_stats(data.train_images)
    print(f"train: {len(data.train_labels):,} images   test: {len(data.test_labels):,} images")
    print("class  train   test")
    for digit in train_counts:
        print(f"{digit:>5}  {train_counts[digit]:>5}  {test_counts[digit]:>5}")
    print(f"train pixel mean {mean:.4f}  std {std:.4f}  (normalization uses 0.1307 / 0.3081)")
    n = 40
    plots.save(plots.digit_grid(data.train_images[:n], [f"label {y}" for y in data.train_labels[:n]],
                                title="MNIST training samples"), out / "samples.png")
    plots.save(plots.class_spread(train_counts, test_counts), out / "class_spread.png")
    print(f"wrote {out / 'samples.png'} and {out / 'class_spread.png'}")
    return 0


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"output directory {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {out}: {exc.strerror}") from None
    return out


# ---------------------------------------------------------------------------------------------
# tinymnist models / summary


def cmd_models(args: argparse.Namespace) -> int:
    from tinymnist.models.bundled import measured_for, pretrained_names, read_measured
    from tinymnist.models.summary import summarize
    from tinymnist.models.zoo import DEFAULT_MODEL, create_model, model_entry, model_names, model_recipe

    measured, bundled = read_measured(), set(pretrained_names())
    rows = []
    for name in model_names():
        s = summarize(create_model(name))
        rows.append({"name": name, "params": s.params, "macs": s.macs, "default": name == DEFAULT_MODEL,
                     "description": model_entry(name).description, "pretrained": name in bundled,
                     "recipe": model_recipe(name), "measured": measured_for(name, measured)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<11} {'params':>7} {'MACs':>10}  {'weights':<7}  {'mean %':>7} {'worst %':>7} {'seeds':>5}  description")
    for r in rows:
        star = "*" if r["default"] else " "
        print(f"{r['name']:<10}{star} {r['params']:>7,} {r['macs']:>10,}  {'yes' if r['pretrained'] else '-':<7}  "
              f"{_measured_columns(r['measured'], r['params'])}  {r['description']}")
    print("* default model; weights: ships pretrained weights, usable by name wherever a checkpoint is taken "
          "(tinymnist export NAME, predict --checkpoint NAME, tinymnist.load_pretrained(NAME))")
    if measured is not None:
        machine, images = measured.get("machine", {}), measured.get("train_images")
        print(f"mean/worst: final-epoch test accuracy over the seeds shown, each model trained with its recipe on "
              f"{f'{images:,}' if isinstance(images, int) else '?'} training images (benchmarks/frontier.py, "
              f"{measured.get('date', '?')}, {machine.get('cores', '?')} cores of {machine.get('cpu', '?')})")
    for r in rows:
        if r["recipe"]:
            print(f"{r['name']} trains with its recipe: {_recipe_flags(r['recipe'])} (flags given override it)")
    return 0


def _measured_columns(entry: dict[str, Any] | None, params: int) -> str:
    """mean %, worst % and seeds of a model's measured figures, or why there are none."""
    if entry is None:
        return f"{'not measured':>21}"
    if entry.get("outdated") or entry.get("params") != params:  # measured on another network or recipe
        return f"{'outdated':>21}"
    return f"{entry['mean']:>7.3f} {entry['worst']:>7.2f} {len(entry['seeds']):>5}"


def _recipe_flags(recipe: dict[str, Any]) -> str:
    """A recipe as the train flags that would set it: "--lr 0.2 --rotate 3.0 --no-augment"."""
    fields, words = _config_fields(), []
    for name, value in recipe.items():
        if isinstance(value, bool):  # a switch: its flag, or the opposite one
            flag = fields[name].metadata.get("flag", flag_name(name))
            words.append(flag if value != fields[name].default else _opposite(name, flag))
        else:
            words.append(_flag(name, " ".join(map(str, value)) if isinstance(value, tuple | list) else str(value)))
    return " ".join(words)


def _build_model(name: str, model_args: dict[str, Any] | None) -> Any:
    """The named model, or a one-line UserError for an unknown name or a bad argument."""
    from tinymnist.models.zoo import create_model

    try:
        return create_model(name, **(model_args or {}))
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from exc
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def cmd_summary(args: argparse.Namespace) -> int:
    from tinymnist.models.summary import format_table, summarize

    summary = summarize(_build_model(args.model, args.model_args))
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    print(f"model: {args.model}")
    print(format_table(summary))
    print(f"parameters {summary.params:,} (trainable {summary.trainable_params:,}); "
          f"MACs per image {summary.macs:,}; activation memory per image {summary.activation_bytes / 1024:.1f} KiB; "
          f"receptive field {summary.receptive_field} px")
    return 0


# ---------------------------------------------------------------------------------------------
# tinymnist train


def _build_config(saved: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """The config from a saved config.json (none: {}) with the flags given on top."""
    from tinymnist.training.config import ConfigError, config_with

    try:
        return config_with(saved, overrides)
    except ConfigError as exc:  # fields given as flags are worded as flags, those from a --config file by name
        given = set(overrides)
        raise UserError("bad training configuration: " + exc.worded(lambda s, v: _flag(s) if s in given else s)) from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad training configuration: {exc}") from None


def _flag(setting: str, value: str = "") -> str:
    """How the command line words a setting (a TrainConfig field, or another flag such as out or device):
    its flag, with a value when one is given: "--subset 128 -> 256". A switch (--no-augment) takes no value,
    so a value is told with the field's name: "augment True -> False (--no-augment)"."""
    f = _config_fields().get(setting)
    if f is None or "flag" not in f.metadata:
        return flag_name(setting, value)
    flag = f.metadata["flag"]
    if value and isinstance(f.default, bool):
        return f"{setting} {value} ({flag})"
    return f"{flag} {value}" if value else flag


def _as_flags(message: str, given: set[str]) -> str:
    """A config error in the words of the command line: `train_subset must be ...` -> `--subset must be ...`
    for the fields given as flags (fields from a --config file keep their names)."""
    import re

    return re.sub(r"\b([a-z]+(?:_[a-z]+)*)\b(?= must)", lambda m: _flag(m[1]) if m[1] in given else m[1], message)


def _run_dir(out: str | None, model: str, seed: int, resume: bool) -> Path:
    """--out, else runs/MODEL-seedSEED; that name taken by a run, the first free runs/MODEL-seedSEED-K
    (a second `tinymnist train` starts another run, it does not fail). With --resume and no --out: the
    latest of those runs."""
    if out:
        return Path(out)
    base = Path("runs") / f"{model}-seed{seed}"
    candidates = [base] + [base.with_name(f"{base.name}-{k}") for k in range(2, 10_000)]
    taken = list(itertools.takewhile(lambda c: (c / "last.pt").exists(), candidates))
    if not resume:
        return candidates[len(taken)]
    if not taken:
        raise UserError(f"no run to resume: {base} holds no checkpoint (last.pt); pass --out RUN_DIR "
                        "to name the run, or leave out --resume to start one")
    return taken[-1]


def _repeat_flags(args: argparse.Namespace) -> str:
    """The flags a hint must repeat so that the command it suggests finds the same data and device."""
    import shlex

    extra = f" --data-dir {shlex.quote(args.data_dir)}" if args.data_dir else ""
    return extra + (f" --device {args.device}" if args.device != "auto" else "")


def _recipe_note(cfg: Any) -> str:
    """", with its recipe: --lr 0.2 --rotate 3.0" for the recipe values the run takes ("" for none)."""
    from tinymnist.training.config import recipe_in_effect

    taken = recipe_in_effect(cfg)
    return f", with its recipe: {_recipe_flags(taken)}" if taken else ""


def cmd_train(args: argparse.Namespace) -> int:
    from tinymnist.backends.device import resolve_device
    from tinymnist.models.zoo import model_names
    from tinymnist.training.config import read_config_file
    from tinymnist.training.resume import check_resumable

    if args.model and args.model not in model_names():
        raise UserError(f"unknown model {args.model!r}; choose one of: {', '.join(model_names())}")
    overrides = {name: getattr(args, name) for name in _config_fields() if getattr(args, name) is not None}
    base: dict[str, Any] = {}
    if args.config:
        base = read_config_file(args.config)
    cfg = _build_config(base, overrides)
    _build_model(cfg.model, cfg.model_args)  # a bad --model-args fails here, in one line
    device = resolve_device(args.device)  # --device cuda without CUDA fails here, in one line
    if cfg.teacher:
        from tinymnist.training.checkpoint import load_checkpoint

        load_checkpoint(cfg.teacher)  # and so does a teacher that is not a readable checkpoint
    out = _run_dir(args.out, cfg.model, cfg.seed, args.resume)
    if args.resume and (out / "config.json").exists() and not args.config:
        # `--resume --out DIR` alone continues the run as it was configured; flags given still override.
        cfg = _build_config(read_config_file(out / "config.json"), overrides)
    if args.resume:
        ckpt = check_resumable(out, cfg)  # before anything is printed or read
        if ckpt["epoch"] >= cfg.epochs:
            final = ckpt["history"][-1]
            print(f"{out} is complete: {ckpt['epoch']} of {cfg.epochs} epochs trained, final test accuracy "
                  f"{final['test_accuracy']:.2f}%; nothing to do (a longer run is a new run: --out and --epochs)")
            return 0
    elif (out / "last.pt").exists():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or --out to start another")
    made = _missing_dirs(out)
    _out_dir(str(out))  # a path that cannot be a directory fails here, before any data is read
    try:
        return _train_into(args, cfg, device, out)
    except BaseException:
        _remove_if_empty(made)  # a run that failed before writing anything leaves no empty directory behind
        raise


def _missing_dirs(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_if_empty(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first: a parent is empty only once its child is gone
        try:
            d.rmdir()
        except OSError:  # not empty (the run wrote something), or already gone
            return


def _train_into(args: argparse.Namespace, cfg: Any, device: Any, out: Path) -> int:
    """`cmd_train` once the run's configuration and directory are settled: the data, then training."""
    from tinymnist.backends.device import describe
    from tinymnist.data.mnist import load_mnist
    from tinymnist.training.trainer import available_cores, format_epoch, train

    data = load_mnist(args.data_dir)

    progress = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        def progress(total: int, desc: str) -> Any:
            return tqdm(total=total, desc=desc, leave=False, unit="batch")

    interrupts = Interrupts()

    def on_epoch(record: dict[str, Any]) -> None:
        interrupts.check()
        if not args.quiet:
            print(format_epoch(record, cfg.epochs), flush=True)

    cores = available_cores()
    if cfg.threads > cores and device.type == "cpu":
        print(f"tinymnist: warning: {cfg.threads} threads asked for, {cores} cores available; using {cores}",
              file=sys.stderr)
    try:  # a Ctrl-C as soon as the first line is out (a script reading it may send one) still gets the hint
        if not args.quiet:
            verb = "continuing" if args.resume else "training"
            print(f"{verb} {cfg.model} for {cfg.epochs} epochs, seed {cfg.seed}, on {describe(device)}, into {out}"
                  f"{_recipe_note(cfg)}", flush=True)
        with interrupts:
            metrics = train(cfg, data, out, resume=args.resume, on_epoch=on_epoch, progress=progress,
                            notice=lambda line: print(f"tinymnist: {line}", file=sys.stderr), device=device,
                            data_dir=args.data_dir)
            interrupts.check()
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: tinymnist train --resume --out {out}{_repeat_flags(args)}", file=sys.stderr)
        return 130
    print(f"final test accuracy {metrics['final_test_accuracy']:.2f}% (last epoch, {metrics['params']:,} parameters); "
          f"{metrics['images_per_second']:.0f} images/s ({metrics['engine']} engine, {metrics['threads']} threads); "
          f"run saved in {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# tinymnist evaluate / report


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tinymnist.analysis.report import evaluate_loaded
    from tinymnist.backends.device import resolve_device
    from tinymnist.data.mnist import load_mnist
    from tinymnist.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)  # a wrong path fails in one line before any data is read
    device = resolve_device(args.device)  # and so does a device this machine lacks
    metrics = evaluate_loaded(ckpt, load_mnist(args.data_dir), device)
    metrics.pop("probabilities")
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(f"model {metrics['model']} (epoch {metrics['epoch']}): test accuracy {metrics['accuracy']:.2f}% "
          f"({metrics['correct']}/{metrics['total']}), loss {metrics['loss']:.4f}")
    print("digit  precision  recall")
    for digit, (p, r) in enumerate(zip(metrics["precision"], metrics["recall"], strict=True)):
        print(f"{digit:>5}  {100 * p:8.2f}%  {100 * r:6.2f}%")
    print("confusion matrix (rows: true label, columns: predicted)")
    for digit, row in enumerate(metrics["confusion"]):
        print(f"{digit:>3} " + " ".join(f"{v:>5}" for v in row))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tinymnist.analysis.report import check_run_dir, write_report
    from tinymnist.data.mnist import load_mnist

    check_run_dir(Path(args.run_dir))  # before any data is read
    path = write_report(Path(args.run_dir), load_mnist(args.data_dir))
    print(f"wrote {path} and its figures")
    return 0


# ---------------------------------------------------------------------------------------------
# tinymnist predict / export


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from tinymnist.data.preprocess import load_digit
    from tinymnist.evaluation.predict import predict_digits
    from tinymnist.training.checkpoint import load_model

    model = load_model(args.checkpoint, args.device)
    failures = 0
    results = []
    for path in args.images:
        try:
            digit = load_digit(path)
        except UserError as exc:
            print(f"tinymnist: error: {exc}", file=sys.stderr)
            failures += 1
            results.append({"image": path, "error": str(exc)})
            continue
        result = {"image": path, **predict_digits(model, digit[None], top=args.top)[0]}
        if args.save_input:
            out = _out_dir(args.save_input) / f"{Path(path).stem}-28x28.png"
            Image.fromarray(np.asarray(digit)).save(out)
            result["input_saved"] = str(out)
        results.append(result)
        if not args.json:
            top = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in result["top"])
            print(f"{path}: {result['label']} ({100 * result['probability']:.1f}%)   top {args.top}: {top}")
    if args.json:
        for r in results:
            r.pop("probabilities", None)
        print(json.dumps(results, indent=2))
    return 1 if failures else 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "c":
        return _export_c(args)
    if args.format == "web":
        return _export_web(args)
    from tinymnist.export.portable import export

    result = export(args.checkpoint, args.format, Path(args.out))
    print(f"wrote {result['path']} ({result['format']}, dynamic batch, BatchNorm folded: {result['folded_bn']}); "
          f"parity vs PyTorch: max |logit difference| = {result['max_abs_diff']:.2e}")
    return 0


def _export_c(args: argparse.Namespace) -> int:
    from tinymnist.export.c.c_export import export_c
    from tinymnist.export.c.quantize import QuantConfig

    r = export_c(args.checkpoint, Path(args.out), args.data_dir, QuantConfig(calibration_images=args.calibration,
                                                                        range_quantile=args.range_quantile))
    print(f"wrote {' and '.join(r['files'])}")
    print(f"{r['model']}: {r['params']:,} parameters; test accuracy float {r['float_accuracy']:.2f}%, "
          f"int8 {r['int8_accuracy']:.2f}% (calibrated on {args.calibration:,} training images)")
    flash = r.get("flash")
    sizes = (f"flash {flash['flash']:,} bytes, RAM {r['ram_static']:,} bytes static + {flash['stack']:,} stack "
             "(arm-none-eabi-gcc -Os, Cortex-M4)") if flash else \
        f"RAM {r['ram_static']:,} bytes static; const tables {r['tables']:,} bytes (no arm-none-eabi-gcc to measure code)"
    print(sizes)
    return 0


def _export_web(args: argparse.Namespace) -> int:
    from tinymnist.export.c.quantize import QuantConfig
    from tinymnist.export.web.web_export import export_web

    r = export_web(args.checkpoint, Path(args.out), args.data_dir, QuantConfig(calibration_images=args.calibration,
                                                                        range_quantile=args.range_quantile))
    print(f"wrote {r['out']}: {', '.join(r['files'])} ({r['bytes']:,} bytes in all; the model "
          f"{r['wasm_bytes']:,} bytes of WebAssembly)")
    print(f"{r['model']}: {r['params']:,} parameters; test accuracy float {r['float_accuracy']:.2f}%, "
          f"int8 {r['int8_accuracy']:.2f}% (calibrated on {args.calibration:,} training images)")
    checked = (f"the module's scores equal the integer reference's on {r['checked_images']} test images (Node.js)"
               if r["checked_images"] else "Node.js not found: the module's scores were not checked here")
    print(f"{checked}; open {Path(r['out']) / 'index.html'} in a browser, or upload the folder to any static host")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the draw-a-digit page and API until SIGTERM (exit 0) or Ctrl+C (130), finishing requests in flight."""
    from tinymnist.backends.device import resolve_device
    from tinymnist.serve.server import bind, serve

    device = resolve_device(args.device)  # before the port is taken
    sock = bind(args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"tinymnist: warning: serving on {args.host}, reachable from other machines", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    serve(sock, args.checkpoint, device=device, max_connections=args.max_connections, request_timeout=args.request_timeout,
          on_ready=lambda: print(f"tinymnist: draw a digit at http://{host}:{args.port}/  (Ctrl+C stops)", flush=True))
    return 0


# ---------------------------------------------------------------------------------------------
# tinymnist search

def _search_config(args: argparse.Namespace) -> Any:
    """The SearchConfig of the flags; a bad value is one UserError naming its flag."""
    import dataclasses

    from tinymnist.search.config import SearchConfig

    fields = {f.name for f in dataclasses.fields(SearchConfig)}
    values = {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}
    if values.get("opt") in ("O2", "Os"):  # `--opt Os` as `--opt -Os`
        values["opt"] = "-" + values["opt"]
    try:
        return SearchConfig(**values)
    except ValueError as exc:
        raise UserError(_as_flags(str(exc), fields)) from None


class Interrupts:
    """Ctrl-C while training, made certain. Python raises KeyboardInterrupt at the next bytecode, but
    when that falls inside a finalizer (a __del__, a weakref callback) it is printed as "Exception
    ignored" and training would run on to the end. While entered (on the main thread), the handler
    also records the signal, and `check()` (each epoch's end) raises it again."""

    def __init__(self) -> None:
        self.seen = False
        self.previous: Any = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt


def cmd_search(args: argparse.Namespace) -> int:
    try:
        import optuna  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise UserError(f"tinymnist search needs {exc.name}: pip install 'tinymnist[search]'") from None
    from tinymnist.search.study import run_search, shown_url, storage_url

    cfg = _search_config(args)
    log = None if args.quiet else (lambda line: print(line, flush=True))
    progress = not args.quiet and sys.stderr.isatty()
    try:
        result = run_search(cfg, progress=progress, log=log)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the study keeps every finished trial: run the same command again to continue "
              f"(study {cfg.study!r} in {shown_url(storage_url(cfg))})", file=sys.stderr)
        return 130
    counts = ", ".join(f"{n} {status}" for status, n in result.counts.items())
    print(f"study {result.study!r} in {result.storage}: {counts}")
    if result.winner is None:
        print(f"no trial completed, so there is no best.json; report in {result.out / 'search.md'}")
        return 0
    w = result.winner
    print(f"winner: trial {w.number}, {w.plan!r}, {w.params:,} parameters, {w.macs:,} MACs; validation {w.mean:.2f}% "
          f"mean (worst {w.worst:.2f}%) over {len(w.accuracies) or 1} seed(s)")
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    print(f"train it: tinymnist train --config {result.out / 'best.json'}")
    return 0


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from tinymnist import __version__
    from tinymnist.models.zoo import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="tinymnist", description="Train, explain and serve a tiny MNIST CNN.")
    parser.add_argument("--version", action="version", version=f"tinymnist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="check the dataset: class counts, pixel stats, sample and spread plots")
    _add_data_dir(p)
    p.add_argument("--out", default="runs/data", help="directory for samples.png and class_spread.png (default: runs/data)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("models", help="list the registered models: parameters, MACs, pretrained weights, measured "
                       "accuracy, recipes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("summary", help="per-layer table: output shape, parameters, MACs, receptive field")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--model-args", type=_json_arg, help="JSON object overriding the model's arguments")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("train", help="train a model; writes config, history, checkpoint and metrics to --out",
                       description="Train a model. Flags left out take the default shown, or the model's own "
                                   "recipe where it sets one (`tinymnist models` lists them), or, with --config or "
                                   "--resume, the saved run's value; flags given override all of these.")
    p.add_argument("--config", help="start from a saved config.json (flags given here override it)")
    _add_config_flags(p)
    _add_device(p)
    p.add_argument("--out", help="run directory (default: runs/MODEL-seedSEED, or the first free "
                   "runs/MODEL-seedSEED-K when that holds a run)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (default: the latest runs/MODEL-seedSEED[-K]) from its last epoch")
    p.add_argument("--quiet", action="store_true", help="no per-epoch log or progress bar")
    _add_data_dir(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy, loss, per-class precision/recall, confusion matrix")
    p.add_argument("checkpoint", help="a last.pt file, a run directory, or a bundled model's name (e.g. separable)")
    p.add_argument("--json", action="store_true")
    _add_device(p)
    _add_data_dir(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict the digit in image files (PNG, JPEG, BMP, ...)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", help="a checkpoint, a run directory or a bundled model's name "
                   "(default: the bundled default model)")
    p.add_argument("--top", type=_int_between(1, 10, "a number of labels from 1 to 10"), default=3,
                   help="how many of the most likely labels to show, 1-10 (default: 3)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--save-input", metavar="DIR", help="save the 28x28 image the model saw into DIR")
    _add_device(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript (checking parity), to int8 C "
                       "for microcontrollers, or to a static web page running that C as WebAssembly")
    p.add_argument("checkpoint", help="a last.pt file, a run directory, or a bundled model's name (e.g. separable)")
    p.add_argument("--format", choices=["onnx", "torchscript", "c", "web"], default="onnx")
    p.add_argument("--out", required=True, help="output file (onnx, torchscript) or directory (c, web)")
    p.add_argument("--calibration", type=_int_between(1, 60000, "a number of training images from 1 to 60000"),
                   default=2048, metavar="N", help="c, web: training images that set the int8 activation ranges (default 2048)")
    p.add_argument("--range-quantile", type=_fraction_above_half, default=0.9999, metavar="Q",
                   help="c, web: each int8 activation range covers this quantile of its calibration values, "
                   "above 0.5 and at most 1 (1: the extremes; default 0.9999)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="a local web page to draw a digit and see the prediction")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_int_between(1, 65535, "a TCP port (1-65535)"), default=8000,
                   help="TCP port, 1-65535 (default: 8000)")
    p.add_argument("--checkpoint", help="a checkpoint, a run directory or a bundled model's name "
                   "(default: the bundled default model)")
    p.add_argument("--max-connections", type=_int_between(1, 10000, "a number of connections (1-10000)"), default=100,
                   metavar="N", help="connections served at once; a request on one more gets 503 (default: 100)")
    p.add_argument("--request-timeout", type=_int_between(1, 3600, "a number of seconds (1-3600)"), default=15,
                   metavar="S", help="seconds a client has to send a request's headers, and again its body; "
                   "slower ones get 408 and are disconnected (default: 15)")
    _add_device(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("search", help="search a network and recipe under parameter/MAC/RAM/instruction budgets (Optuna, on "
                       "validation only); writes trials.csv, best.json, pareto.png, search.md to --out",
                       description="Search PlanNet networks and training recipes under budgets with Optuna (TPE + "
                                   "median pruning), scored on the last --val-size training images; the test set is "
                                   "never read. Running the same command again continues the study. Needs "
                                   "pip install 'tinymnist[search]'.")
    from tinymnist.search.config import SearchConfig

    s = SearchConfig()
    p.add_argument("--max-params", type=int, metavar="N", help=f"parameter budget (default: {s.max_params})")
    p.add_argument("--max-macs", type=int, metavar="M", help="budget of multiply-accumulates per image (default: none)")
    p.add_argument("--max-ram-kb", type=float, metavar="K", help="budget of static int8 RAM in KiB, as `export "
                   "--format c` lays it out (arena + row buffers; the stack comes on top; default: none)")
    p.add_argument("--max-instructions", type=int, metavar="N", help="budget of instructions per inference of the "
                   "int8 C export on --target, predicted from layer shapes by the calibrated cost model (no compiler "
                   "needed; the finalists are counted under QEMU when arm-none-eabi-gcc and qemu-system-arm are there)")
    p.add_argument("--target", metavar="CPU", help="search for a microcontroller, cortex-m4 or cortex-m0: its predicted "
                   "instructions are reported, and the space admits a max-pool of the input image and takes widths in "
                   "fours (the C export's SIMD kernels)")
    p.add_argument("--opt", metavar="LEVEL", help="the target build's optimization whose instructions count: -O2 or -Os "
                   "(default: -O2 for cortex-m4, -Os for cortex-m0)")
    p.add_argument("--epochs", type=int, metavar="E", help=f"epochs per trial (default: {s.epochs})")
    p.add_argument("--trials", type=int, metavar="T", help="trained trials the study should hold in total; a "
                   f"continued study counts its earlier ones (default: {s.trials})")
    p.add_argument("--timeout", type=float, metavar="S", help="start no new trial after S seconds (default: none)")
    p.add_argument("--storage", metavar="URL", help="SQLAlchemy URL of the study, e.g. postgresql://user:pw@host/db "
                   "(default: sqlite:///OUT/study.db)")
    p.add_argument("--study", metavar="NAME", help=f"study name (default: {s.study})")
    p.add_argument("--out", metavar="DIR", help=f"output directory (default: {s.out})")
    p.add_argument("--jobs", type=int, metavar="J", help=f"worker processes, one torch thread each (default: {s.jobs})")
    p.add_argument("--final-seeds", type=int, metavar="N", help="fresh seeds the finalists are re-trained on "
                   f"(default: {s.final_seeds})")
    p.add_argument("--top-k", type=int, metavar="K", help=f"finalists: the best K complete trials (default: {s.top_k})")
    p.add_argument("--subset", dest="train_subset", type=int, metavar="N",
                   help="train each trial on the first N training images (default: all but the validation slice)")
    p.add_argument("--val-size", type=int, metavar="N", help=f"validation: the last N training images (default: {s.val_size})")
    p.add_argument("--seed", type=int, metavar="S", help=f"training and sampler seed (default: {s.seed})")
    p.add_argument("--space", choices=["full", "network"], help="full: search the network and the recipe knobs; "
                   "network: only the network, every trial with the default recipe (default: full)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", default=None,
                   help="do not make the default model a new study's first trial (default: it is, when it fits "
                   "the budgets)")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines or progress bar")
    _add_data_dir(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="write plots and an article-like report.md into a run directory")
    p.add_argument("run_dir")
    _add_data_dir(p)
    p.set_defaults(func=cmd_report)
    return parser


def _joined_opt(argv: Sequence[str]) -> list[str]:
    """`--opt -Os` as `--opt=-Os`: argparse takes a value that starts with "-" for another flag."""
    out = list(argv)
    for i in range(len(out) - 1):
        if out[i] == "--opt" and out[i + 1].startswith("-O"):
            out[i:i + 2] = [f"--opt={out[i + 1]}", ""]
    return [a for a in out if a != ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_joined_opt(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args))
    except SettingError as exc:  # the settings a problem is about, worded as this command's flags
        print(f"tinymnist: error: {exc.worded(_flag)}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"tinymnist: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tinymnist: interrupted", file=sys.stderr)
        return 130
