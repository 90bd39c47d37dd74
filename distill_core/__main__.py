"""Command line: ``python -m distill_core train|sweep|runs|eval|datasets|models|methods|download ...``.

Every command writes or reads the same run folders the app shows. Bad names or values print
one line starting with ``error:`` and exit with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad name or value on the command line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors ending in the help command of the (sub)command that failed:
    ``(see `python -m distill_core --help`)`` or ``(see `python -m distill_core train --help`)``."""

    subcommands: dict[str, argparse.ArgumentParser] | None = None    # set on the top-level parser

    def error(self, message: str):  # one clear line instead of usage + message
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def parse_args(self, args=None, namespace=None):
        # argparse reports a subcommand's unknown flags from the top-level parser; name the subcommand's help.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = (self.subcommands or {}).get(getattr(parsed, "command", None), self)
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _one_line(message: str) -> str:
    """An error message as one plain line (no terminal colour codes), as the CLI promises."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", message).split())


def _key_values(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    from .presets import list_presets
    from .train import AMP_MODES, AUGMENTATIONS, TrainConfig

    d = TrainConfig()
    p = _Parser(prog="python -m distill_core", description="Robust Distillation Lab: train, evaluate and list runs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p.subcommands = sub.choices

    t = sub.add_parser("train", help="train a model with a method; writes a run folder")
    t.add_argument("--preset", choices=list_presets(), default=None, metavar="NAME",
                   help=f"a paper's recipe ({', '.join(list_presets())}); the flags given here override its values")
    t.add_argument("--dataset", default=None, help="default mnist-5k")
    t.add_argument("--model", default=None, help="default papernot-cnn")
    t.add_argument("--method", default=None, help="default standard")
    t.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                   help="a method setting, e.g. --set T=20 (repeatable; see `methods`)")
    t.add_argument("--teacher", dest="teachers", action="append", metavar="ROLE=REF",
                   help="a teacher by role: a run folder, a run name under --runs-dir, a zoo name, or a bare state "
                        "dict ARCH:PATH.pt (PATH.pt alone: the preset's architecture for that role)")
    t.add_argument("--epochs", type=int, default=None, help=f"default {d.epochs}")
    t.add_argument("--batch-size", type=int, default=None,
                   help=f"default {d.batch_size}; under torchrun the global batch, split over the processes")
    t.add_argument("--optimizer", choices=("sgd", "adam"), default=None, help=f"default {d.optimizer}")
    t.add_argument("--lr", type=float, default=None, help=f"default {d.lr}")
    t.add_argument("--momentum", type=float, default=None, help=f"default {d.momentum}")
    t.add_argument("--weight-decay", type=float, default=None, help=f"default {d.weight_decay}")
    t.add_argument("--schedule", choices=("none", "step", "cosine"), default=None, help=f"default {d.schedule}")
    t.add_argument("--milestones", default=None, help="step schedule epochs, e.g. 40,60 (or fractions 0.5,0.75)")
    t.add_argument("--seed", type=int, default=None, help=f"default {d.seed}")
    t.add_argument("--device", default=None, help="auto (cuda > mps > cpu; the default), cpu, cuda, cuda:N or mps")
    t.add_argument("--amp", choices=AMP_MODES, default=None,
                   help="bf16 autocast: auto (the default: on CUDA, for the methods safe under it), off or bf16")
    t.add_argument("--channels-last", choices=("auto", "on", "off"), default=None,
                   help="channels-last memory format (default auto: for CNNs on CUDA)")
    t.add_argument("--compile", action="store_true", default=None, help="torch.compile the student")
    t.add_argument("--augment", choices=AUGMENTATIONS, default=None,
                   help="crop-flip: random crop with 4-pixel padding + horizontal flip, batched on the device "
                        "(default none; the CIFAR presets use crop-flip)")
    t.add_argument("--fraction", type=float, default=1.0, help="share of the training split to use (0, 1]")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    t.add_argument("--eval-samples", type=int, default=None, help="evaluate on the first N test samples")
    t.add_argument("--runs-dir", default="runs")
    t.add_argument("--name", default=None, help="run folder name (default: date-method-dataset-model-id)")
    t.add_argument("--data-root", default=None, help="where mnist / fashion-mnist / cifar10 live (default ./data)")
    t.add_argument("--download", action="store_true", help="download a torchvision dataset if it is missing")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    sw = sub.add_parser("sweep", help="one run per value of a knob (x seeds), each measured with AutoAttack; "
                                      "prints the trade-off table")
    sw.add_argument("--dataset", default="mnist-5k", help="default mnist-5k")
    sw.add_argument("--model", default="papernot-cnn", help="default papernot-cnn")
    sw.add_argument("--method", required=True, help="the method swept (see `methods`)")
    sw.add_argument("--knob", required=True,
                    help="the setting varied: one of the method's (see `methods`) or the trainer's lr, weight_decay, "
                         "epochs")
    sw.add_argument("--values", required=True,
                    help="the knob's values, comma-separated, e.g. 0.5,1,6 (none: the dataset's default, where "
                         "the setting allows it)")
    sw.add_argument("--seeds", default="0",
                    help="training seeds, comma-separated (default 0): one run per value x seed")
    sw.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                    help="a method setting shared by every run, e.g. --set eps_warmup=0.3 (repeatable)")
    sw.add_argument("--teacher", dest="teachers", action="append", metavar="ROLE=REF",
                    help="a teacher by role: a run folder, a run name under --runs-dir, a zoo name, or ARCH:PATH.pt")
    sw.add_argument("--epochs", type=int, default=None, help=f"default {d.epochs}")
    sw.add_argument("--batch-size", type=int, default=None, help=f"default {d.batch_size}")
    sw.add_argument("--lr", type=float, default=None, help=f"default {d.lr}")
    sw.add_argument("--device", default=None, help="auto (the default), cpu, cuda, cuda:N or mps")
    sw.add_argument("--fraction", type=float, default=1.0, help="share of the training split to use (0, 1]")
    sw.add_argument("--protocol", choices=("autoattack", "autoattack-fast"), default="autoattack",
                    help="robust accuracy: autoattack (standard, the default) or autoattack-fast (APGD-CE + APGD-T)")
    sw.add_argument("--n", type=int, default=500, help="test samples attacked per run (default 500)")
    sw.add_argument("--runs-dir", default="runs")
    sw.add_argument("--quiet", action="store_true", help="no progress bars")

    r = sub.add_parser("runs", help="list the runs in a runs folder; `runs import CKPT ...` adds a model trained "
                                    "elsewhere")
    r.add_argument("--runs-dir", default="runs")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r_sub = r.add_subparsers(dest="runs_command", metavar="{import}")
    ri = r_sub.add_parser("import", help="import a checkpoint trained elsewhere as a run (listed, evaluable, usable "
                                         "as a teacher)")
    ri.add_argument("checkpoint", help="a .pt/.pth file: a state dict, or {'state_dict'|'model'|'net': ...}; "
                                       "loaded with weights_only=True (pickled code is refused)")
    ri.add_argument("--model", required=True, metavar="ARCH", help="its architecture (`python -m distill_core models`)")
    ri.add_argument("--dataset", required=True, help="the dataset it was trained on")
    ri.add_argument("--name", default=None, help="your name for it; also the run folder's name")
    ri.add_argument("--runs-dir", default=argparse.SUPPRESS, help="(default: runs, or the one given before `import`)")
    ri.add_argument("--data-root", default=None, help="where the dataset's files are (to measure clean accuracy)")
    ri.add_argument("--n", type=int, default=1000,
                    help="measure clean accuracy on the first N test images when the dataset is here (0: skip)")

    e = sub.add_parser("eval", help="clean test accuracy of a run; --robust: its robust accuracy (AutoAttack)")
    e.add_argument("run", help="a run folder")
    e.add_argument("--robust", action="store_true",
                   help="measure robust accuracy (AutoAttack at the dataset's eps) and save it in the run")
    e.add_argument("--protocol", default="autoattack",
                   help="with --robust: autoattack (standard, the reported number), autoattack-fast "
                        "(APGD-CE + APGD-T) or pgd-ce (apparent robustness only)")
    e.add_argument("--attacks", default="",
                   help="a table of single attacks, e.g. fgsm,pgd,cw_linf,jsma (for study; not 'robust accuracy')")
    e.add_argument("--n", type=int, default=500, help="test samples used for the attacks")
    e.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts")
    e.add_argument("--data-root", default=None, help="where mnist / fashion-mnist / cifar10 files are (default "
                                                     "$DISTILL_DATA or ./data)")
    e.add_argument("--device", default="auto")

    sub.add_parser("datasets", help="list the datasets")
    sub.add_parser("models", help="list the models")
    sub.add_parser("methods", help="list the methods and their settings")
    z = sub.add_parser("zoo", help="the shipped pretrained models: list or rebuild them")
    z.add_argument("action", choices=("list", "build", "verify"))
    z.add_argument("--only", default="", help="build: comma-separated zoo names (default: all)")
    z.add_argument("--zoo-dir", default=None)

    rp = sub.add_parser("reproduce", help="rerun a paper's experiment headless; writes results.json and results.md")
    rp.add_argument("experiment", choices=("papernot", "bss", "mtard"))
    rp.add_argument("--quick", action="store_true", help="the CPU-minute version (a pipeline check; needs --out)")
    rp.add_argument("--out", default=None, help="output folder (default: assets/reproductions/EXPERIMENT)")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--train-teachers", action="store_true",
                    help="bss, mtard: train the teachers here instead of loading them from the zoo")

    dl = sub.add_parser("download", help="download mnist, fashion-mnist or cifar10 (needs internet)")
    dl.add_argument("dataset")
    dl.add_argument("--data-root", default=None)
    return p


# ---------------------------------------------------------------------- commands


_TRAIN_FLAGS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "seed", "device",
                "max_steps", "eval_samples", "amp", "compile", "augment")


def _train_settings(args) -> dict:
    """The TrainConfig values given on the command line (the rest come from the preset or the defaults)."""
    given = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    if args.channels_last is not None:
        given["channels_last"] = {"on": True, "off": False}.get(args.channels_last, "auto")
    if args.milestones:
        try:
            given["milestones"] = tuple(float(m) for m in args.milestones.split(","))
        except ValueError:
            raise UsageError(f"--milestones must be numbers separated by commas, got {args.milestones!r}") from None
    return given


def _start_line(spec, data: dict, preset) -> str:
    notes = [data["precision"]]
    if data["channels_last"]:
        notes.append("channels_last")
    if data["compiled"]:
        notes.append("torch.compile")
    if data["world_size"] > 1:
        notes.append(f"DDP over {data['world_size']} processes, {spec.train.batch_size // data['world_size']} "
                     "samples each per step")
    if preset is not None:
        notes.append(f"preset {preset.name}")
    return (f"training {spec.method} / {spec.model} on {spec.dataset} ({data['n_train']} samples) "
            f"on {data['device']} [{', '.join(notes)}]")


def cmd_train(args) -> int:
    import functools

    from tqdm import tqdm

    from . import distributed
    from .data import load_dataset
    from .methods import get_method
    from .presets import get_preset, load_teacher, method_settings
    from .runs import CONFIG, atomic_write_json
    from .spec import TrainSpec, prepare_training
    from .train import Event, TrainConfig, run_to_end

    preset = get_preset(args.preset) if args.preset else None
    try:
        config = TrainConfig(**{**(preset.train if preset else {}), **_train_settings(args)})
        method = args.method or (preset.method if preset else "standard")
        settings = method_settings(preset, get_method(method).Config) if preset else {}
        spec = TrainSpec(dataset=args.dataset or (preset.dataset if preset else "mnist-5k"),
                         model=args.model or (preset.model if preset else "papernot-cnn"), method=method,
                         method_config={**settings, **_key_values(args.settings, "--set")}, train=config,
                         teachers=_key_values(args.teachers, "--teacher"), fraction=args.fraction,
                         data_root=args.data_root, download=args.download, name=args.name)
        dist = distributed.init_from_env(config.device)   # a single process unless started by torchrun
        info = functools.cache(lambda: load_dataset(spec.dataset, "test", spec.data_root, spec.download,
                                                    seed=config.seed)[1])
        teachers = {role: load_teacher(ref, info, preset.teachers.get(role) if preset else None, args.runs_dir)
                    for role, ref in spec.teachers.items()}
        stop = threading.Event()
        trainer, writer = prepare_training(spec, args.runs_dir if dist.is_main else None, stop=stop,
                                           teacher_models=teachers)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    if writer is not None and (preset is not None or dist.enabled):
        if preset is not None:
            writer.config["preset"] = preset.name
        if dist.enabled:
            writer.config["distributed"] = {"world_size": dist.world_size, "backend": dist.backend}
        atomic_write_json(writer.path / CONFIG, writer.config)

    # Ctrl-C: stop cleanly, keep the model; torchrun passes a Ctrl-C on to its workers as SIGTERM.
    signals = (signal.SIGINT, signal.SIGTERM) if dist.enabled else (signal.SIGINT,)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    bar = None

    def on_event(event: Event) -> None:
        nonlocal bar
        if event.kind == "start" and dist.is_main:
            print(_start_line(spec, event.data, preset), file=sys.stderr)
            bar = tqdm(total=event.data["total_steps"], disable=args.quiet, unit="step", file=sys.stderr)
        elif event.kind == "step" and bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=event.epoch + 1, loss=f"{event.data['loss']:.4f}", refresh=False)
        elif event.kind == "eval" and bar is not None:
            bar.write(f"epoch {event.epoch + 1}: test accuracy {event.data['test_accuracy']:.2%}")

    try:
        final = run_to_end(trainer, on_event)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if bar is not None:
            bar.close()
    status = EXIT_OK if final.kind in ("done", "stopped") else EXIT_FAILED
    if final.kind != "error":   # after an error on one rank the others may never reach the barrier
        distributed.shutdown()
    if writer is None:
        return status
    s = final.data
    acc = "n/a" if s.get("test_accuracy") is None else f"{s['test_accuracy']:.2%}"
    line = f"{final.kind}: test accuracy {acc}, {s['epochs']} epochs, {s['seconds']:.1f} s, run {writer.path}"
    if s.get("reason"):
        line += f" ({s['reason']})"
    print(line)
    if s.get("warning"):
        print(f"warning: {s['warning']}")
    return status


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def cmd_sweep(args) -> int:
    """Train a sweep's runs one after another, measure each, and print one line per run (see ``lab.sweeps``)."""
    import functools

    from tqdm import tqdm

    from .data import load_dataset
    from .lab.sweeps import check_sweep, run_sweep, sweep_specs, value_label
    from .presets import load_teacher
    from .spec import TrainSpec
    from .train import FINAL_KINDS, Event, TrainConfig

    settings = _key_values(args.settings, "--set")
    if args.knob in settings:
        raise UsageError(f"--set {args.knob}=... is the knob swept: give its values with --values")
    try:
        config = TrainConfig(**{k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                                  ("lr", args.lr), ("device", args.device)) if v is not None})
        base = TrainSpec(dataset=args.dataset, model=args.model, method=args.method, method_config=settings,
                         train=config, teachers=_key_values(args.teachers, "--teacher"), fraction=args.fraction)
        specs = sweep_specs(base, args.knob, args.values, args.seeds)
        info = functools.cache(lambda: load_dataset(base.dataset, "test", seed=config.seed)[1])
        teachers = {role: load_teacher(ref, info, None, args.runs_dir) for role, ref in base.teachers.items()}
        teachers = check_sweep(specs, args.runs_dir, args.protocol, args.n, teachers)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None

    total = len(specs)
    sweep_id = specs[0].tags["sweep"]
    print(f"sweep {sweep_id}: {args.method} / {args.model} on {args.dataset}, {args.knob} over "
          f"{args.values}, {total} run(s), measured with {args.protocol} (n = {args.n})", file=sys.stderr)
    stop = threading.Event()

    def on_interrupt(*_) -> None:
        if not stop.is_set():
            print("\nstopping: the current run is saved as stopped, the rest are not started", file=sys.stderr)
        stop.set()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    bars: dict[str, tqdm] = {}
    clean: dict[int, float | None] = {}

    def title(i: int) -> str:
        tags = specs[i].tags
        return f"[{i + 1}/{total}] {value_label(args.knob, tags['value'])} seed {tags['seed']}"

    def close(key: str) -> None:
        bar = bars.pop(key, None)
        if bar is not None:
            bar.close()

    def on_event(i: int, event: Event) -> None:
        if event.kind == "start":
            bars["train"] = tqdm(total=event.data["total_steps"], desc=title(i), unit="step", file=sys.stderr,
                                 disable=args.quiet)
        elif event.kind == "step" and "train" in bars:
            bars["train"].update(1)
            bars["train"].set_postfix(epoch=event.epoch + 1, loss=f"{event.data['loss']:.4f}", refresh=False)
        elif event.kind in FINAL_KINDS:
            close("train")
            clean[i] = event.data.get("test_accuracy")
            if not args.quiet:
                print(f"{title(i)}: {event.kind}, clean accuracy {_pct(clean[i])} %", file=sys.stderr)

    def on_measure(i: int, fraction: float, message: str) -> None:
        if "measure" not in bars:
            bars["measure"] = tqdm(total=1.0, desc=f"{title(i)} measuring", file=sys.stderr, disable=args.quiet,
                                   bar_format="{l_bar}{bar}| {elapsed} {postfix}")
        bars["measure"].n = round(fraction, 3)
        bars["measure"].set_postfix_str(message)
        if fraction >= 1.0:
            close("measure")
            if not args.quiet:
                print(f"{title(i)}: measured, {message}", file=sys.stderr)

    try:
        results = run_sweep(specs, args.runs_dir, args.protocol, args.n, teacher_models=teachers,
                            on_event=on_event, on_measure=on_measure, stop=stop, measure_stopped=False)
    finally:
        signal.signal(signal.SIGINT, previous)
        for key in list(bars):
            close(key)
    print(f"{'value':<10} {'seed':>4} {'clean %':>8} {'robust % (AutoAttack)':>23} {'apparent %':>11}  run")
    for r in results:
        robust, apparent = (None, None) if r.report is None else (r.report.robust_accuracy,
                                                                  r.report.apparent_robust_accuracy)
        reason = r.final.data.get("reason")
        note = "" if r.status == "done" else f"  ({r.status}{': ' + reason if reason else ''})"
        value = value_label("", r.spec.tags["value"])[1:]
        print(f"{value:<10} {r.spec.tags['seed']:>4} {_pct(r.final.data.get('test_accuracy')):>8} {_pct(robust):>23} "
              f"{_pct(apparent):>11}  {r.path}{note}")
    measured = [r.report for r in results if r.report is not None]
    if measured:
        print(f"robust: {measured[0].label}; clean: the whole test split; apparent: PGD-CE (what a naive attack "
              "reports)")
    if len(results) < total:
        print(f"{total - len(results)} of {total} run(s) not started")
    if any(r.status == "stopped" and r.report is None for r in results):
        print("a stopped run is not measured: `python -m distill_core eval RUN --robust` measures it")
    return EXIT_FAILED if any(r.status in ("diverged", "error") for r in results) else EXIT_OK


def cmd_runs(args) -> int:
    from .runs import list_runs

    if args.runs_command == "import":
        return cmd_runs_import(args)

    runs = list_runs(args.runs_dir)
    if args.json:
        print(json.dumps([r.row() for r in runs], indent=2))
        return EXIT_OK
    if not runs:
        print(f"no runs in {args.runs_dir}")
        return EXIT_OK
    print(f"{'name':<58} {'status':<11} {'method':<10} {'dataset':<10} {'model':<13} {'epochs':>6} {'test acc':>9} "
          f"{'robust':>8}")
    for r in runs:
        row = r.row()
        acc = "" if row["test_accuracy"] is None else f"{row['test_accuracy']:.2%}"
        rob = "" if row["robust_accuracy"] is None else f"{row['robust_accuracy']:.2%}"
        print(f"{row['name']:<58} {row['status']:<11} {row['method'] or '':<10} {row['dataset'] or '':<10} "
              f"{row['model'] or '':<13} {row['epochs'] if row['epochs'] is not None else '':>6} {acc:>9} {rob:>8}")
        if r.broken:
            print(f"    broken: {r.error}")
        elif r.interrupted:
            print(f"    interrupted: {r.interrupted}")
    return EXIT_OK


def cmd_runs_import(args) -> int:
    from .model_import import ModelImportError, import_checkpoint, import_summary

    if not Path(args.checkpoint).is_file():
        raise UsageError(f"no checkpoint file at {args.checkpoint}")
    try:
        path = import_checkpoint(args.checkpoint, args.model, args.dataset, args.runs_dir, name=args.name,
                                 n_eval=max(args.n, 0), data_root=args.data_root)
    except ModelImportError as e:
        raise UsageError(str(e)) from None
    kind, text = import_summary(path)
    print(f"imported {args.checkpoint} as run {path}")
    print(f"  {text.split(': at chance level')[0]}")
    if kind == "warning":
        print(f"warning: {text.split(': ', 1)[1]}", file=sys.stderr)
    print(f"next: `python -m distill_core eval {path} --robust` measures its robust accuracy (AutoAttack)")
    return EXIT_OK


def cmd_eval(args) -> int:
    from .data import load_dataset
    from .device import choose_device
    from .runs import RunError, load_model, update_summary
    from .train import evaluate_accuracy

    if not Path(args.run).is_dir():
        raise UsageError(f"no run folder at {args.run}")
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    device = choose_device(args.device).device
    try:
        model, info, config = load_model(args.run, device)
        test, _ = load_dataset(config["dataset"], "test", args.data_root, seed=config["train"]["seed"],
                               **config.get("dataset_options", {}))
    except (RunError, ValueError, FileNotFoundError, KeyError, TypeError) as e:
        raise UsageError(str(e)) from None
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if args.robust:
        return _eval_robust(args, device)
    if not attacks:
        acc = evaluate_accuracy(model, test, device=device)
        print(f"clean test accuracy: {acc:.2%} ({len(test)} samples, {config['dataset']}, {config['model']})")
        return EXIT_OK
    from .attacks import list_attacks
    from .evaluate import attack_table

    unknown = [a for a in attacks if a not in list_attacks()]
    if unknown:
        raise UsageError(f"unknown attack(s) {', '.join(unknown)}; choose from: {', '.join(list_attacks())}")
    n = min(args.n, len(test))
    x, y = test.tensors[0][:n].to(device), test.tensors[1][:n].to(device)
    table = attack_table(model, (x, y), attacks=attacks, info=info, seed=args.seed)
    print(f"{'attack':<12} {'accuracy':>9}  settings")
    for row in table:
        settings = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in (row.get("settings") or {}).items())
        print(f"{row['attack']:<12} {row['accuracy']:>9.2%}  {settings}")
    print("these are single attacks: robust accuracy is `eval --robust` (AutoAttack)")
    update_summary(args.run, attack_table={"n": n, "table": table})
    return EXIT_OK


def _eval_robust(args, device) -> int:
    from tqdm import tqdm

    from .lab.tradeoff import evaluate_run_robustness
    from .robustness import PROTOCOLS
    from .runs import RunError

    if args.protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {args.protocol!r}; choose from: {', '.join(PROTOCOLS)}")
    bar = tqdm(total=1.0, unit="", bar_format="{l_bar}{bar}| {elapsed} {postfix}", file=sys.stderr,
               disable=args.quiet if hasattr(args, "quiet") else False)

    def progress(fraction: float, message: str) -> None:
        bar.n = round(fraction, 3)
        bar.set_postfix_str(message)

    try:
        report = evaluate_run_robustness(args.run, args.protocol, args.n, args.seed, progress, device,
                                         data_root=args.data_root)
    except (RunError, ValueError, FileNotFoundError, KeyError) as e:
        raise UsageError(str(e)) from None
    finally:
        bar.close()
    print(f"clean accuracy:            {report.clean_accuracy:.2%}")
    for name, acc in report.per_attack.items():
        print(f"  after {name:<18} {acc:.2%}")
    print(f"robust accuracy:           {report.robust_accuracy:.2%}  ({report.label})")
    print(f"apparent (PGD-CE):         {report.apparent_robust_accuracy:.2%}")
    if report.masked:
        print(f"gradient masking: {report.flags['zero_gradients']:.0%} of the samples have exactly zero input "
              "gradient - the apparent number is not robustness")
    for message in report.flags.get("messages", []):
        print(f"AutoAttack check: {message}")
    print(f"{report.seconds:.1f} s, saved in {Path(args.run) / 'summary.json'}")
    return EXIT_OK


def cmd_list(what: str) -> int:
    if what == "datasets":
        from .data import dataset_description, list_datasets

        for name in list_datasets():
            print(f"{name:<15} {dataset_description(name)}")
    elif what == "models":
        from .models import describe_model, list_models

        for name in list_models():
            print(f"{name:<15} {describe_model(name)}")
    else:
        import dataclasses

        from .methods import get_method, list_methods

        for name in list_methods():
            cls = get_method(name)
            settings = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls.Config))
            roles = f" [teachers: {', '.join(cls.teacher_roles)}]" if cls.teacher_roles else ""
            print(f"{name:<10} {cls.summary}{roles}\n{'':<10} settings: {settings or '-'}")
    return EXIT_OK


def cmd_download(args) -> int:
    from .data import download_dataset

    try:
        root = download_dataset(args.dataset, args.data_root)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"{args.dataset} is in {root}")
    return EXIT_OK


def cmd_zoo(args) -> int:
    from . import zoo, zoo_build
    from .train import FINAL_KINDS

    zoo_dir = Path(args.zoo_dir) if args.zoo_dir else None
    if args.action == "build":
        from tqdm import tqdm

        bars: dict = {}

        def on_event(name, event):
            if event.kind == "start":
                bars[name] = tqdm(total=event.data["total_steps"], desc=name, unit="step", file=sys.stderr)
            elif event.kind == "step":
                bars[name].update(1)
            elif event.kind in FINAL_KINDS:
                bars[name].close()

        def on_measure(name, fraction, message):   # robustness.evaluate_robustness's progress, per zoo model
            print(f"{name}: robustness {fraction:4.0%} {message}", file=sys.stderr)

        only = [n.strip() for n in args.only.split(",") if n.strip()]
        try:
            manifest = zoo_build.build_zoo(zoo_dir, only or None, on_event, on_measure)
        except ValueError as e:
            raise UsageError(str(e)) from None
        print(f"built {len(only) or len(manifest['models'])} model(s) into {zoo_dir or zoo.ZOO_DIR}")
    entries = zoo.list_zoo(zoo_dir)
    if not entries:
        print("the zoo is empty: run `python -m distill_core zoo build`")
        return EXIT_OK
    bad = 0
    print(f"{'name':<26} {'model':<13} {'method':<10} {'clean':>7} {'robust':>7} {'apparent':>8} {'size':>8}  role")
    for m in entries:
        ok = ""
        if args.action == "verify":
            path = Path(zoo_dir or zoo.ZOO_DIR) / m["file"]
            good = path.exists() and zoo.sha256(path) == m["sha256"]
            bad += not good
            ok = "  ok" if good else "  HASH MISMATCH"
        met = m["metrics"]
        app = met.get("apparent_robust_accuracy")
        app = "" if app is None else f"{app:.2%}"
        print(f"{m['name']:<26} {m['model']:<13} {m['method']:<10} {met['test_accuracy']:>7.2%} "
              f"{met['robust_accuracy']:>7.2%} {app:>8} {m['bytes'] / 1e6:>6.2f}MB  {m['role']}{ok}")
    total = sum(m["bytes"] for m in entries)
    print(f"{len(entries)} models, {total / 1e6:.1f} MB")
    for ds in dict.fromkeys(m["dataset"] for m in entries):
        attack = next(m["metrics"]["robust_attack"] for m in entries if m["dataset"] == ds)
        print(f"robust accuracy on {ds}: {attack}; apparent: PGD-CE, the number a naive attack reports")
    return EXIT_FAILED if bad else EXIT_OK


def cmd_reproduce(args) -> int:
    from .reproduce import ReproductionError, check_options, expectation_status, run_reproduction

    try:
        out = check_options(args.experiment, args.quick, args.out, args.train_teachers)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        results = run_reproduction(args.experiment, quick=args.quick, out=out, seed=args.seed,
                                   train_teachers=args.train_teachers)
    except ReproductionError as e:  # a missing zoo teacher: one line saying what to do
        raise UsageError(str(e)) from None
    print(f"{args.experiment}: {results['seconds']:.1f} s, wrote {out / 'results.json'} and {out / 'results.md'}")
    for e in results["expectations"]:
        print(f"  [{expectation_status(e)}] {e['claim']}: {e['detail']}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "runs":
            return cmd_runs(args)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "zoo":
            return cmd_zoo(args)
        if args.command == "download":
            return cmd_download(args)
        if args.command == "reproduce":
            return cmd_reproduce(args)
        return cmd_list(args.command)
    except UsageError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
