"""The ``medground`` command line. Parsing only: each command's work lives in its own module,
imported when the command runs, so ``--help`` and argument errors answer at once (no Arrow,
``datasets`` or builders loaded)."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sqlite3
import sys
from pathlib import Path

from .chunks import parse_shard
from .engine import ENGINES
from .errors import ON_ERROR_CHOICES, BuildError, InputError, MissingExtra, PublishError
from .generation import commands as generation
from .progress import close_bars
from .splits import parse_ratios


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def builder_options(args: argparse.Namespace) -> dict:
    import yaml

    options: dict = {}
    if args.options_file:
        loaded = yaml.safe_load(Path(args.options_file).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise BuildError(f"{args.options_file}: builder options must be a mapping")
        options.update(loaded)
    options.update(dict(args.set or []))
    return options


def print_summary(out: Path | str, manifest: dict) -> None:
    counts = manifest["counts"]
    print(f"Built {out}")
    for split, c in counts["splits"].items():
        labels = ", ".join(f"{k} {v}" for k, v in c["labels"].items())
        print(
            f"  {split:<11} {c['records']:>6} records  {c['images']:>6} images  "
            f"{c['cases']:>5} cases  ({labels})"
        )
    print(
        f"  items read {counts['items_read']} = built {counts['items_built']} "
        f"+ skipped {counts['items_skipped']}; "
        f"components below min size {counts['components_dropped']}"
    )
    left_out = sum(manifest.get("formats", {}).get("targets_without_kept_queries", {}).values())
    if left_out:  # a build without a generator: targets are there, but nothing to train on yet
        print(f"  targets without kept queries (no chat rows, no COCO refs): {left_out}")
    for skip in manifest["skipped"]:
        if skip["stage"] == "input":
            print(f"  skipped {skip['item']}: {skip['path']}: {skip['reason']}")


def _config_list(text: str | None) -> list[str] | None:
    """``--configs coco,chat-llava`` (``all``, or ``none``) as a list; None keeps the default."""
    if text is None:
        return None
    return [] if text.strip() == "none" else [c.strip() for c in text.split(",") if c.strip()]


def cmd_build(args: argparse.Namespace) -> int:
    from .build import build

    manifest = build(
        args.source,
        args.data_dir,
        args.out,
        config_name=args.config_name,
        on_error=args.on_error,
        split_ratios=parse_ratios(args.split_ratios) if args.split_ratios else None,
        num_proc=args.num_proc,
        options=builder_options(args),
        overwrite=args.overwrite,
        generator=args.generator,
        generation_options={
            k: v for k, v in vars(generation.options_from_args(args)).items() if k != "generator"
        },
        derived_configs=_config_list(args.configs),
        shard=parse_shard(args.shard) if args.shard else None,
        engine=args.engine,
        ray_address=args.ray_address,
        work_dir=args.work_dir,
    )
    print_summary(args.out, manifest)
    generation.print_verification(manifest.get("verification"))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .generation.reverify import cmd_verify

    return cmd_verify(args)


def cmd_merge(args: argparse.Namespace) -> int:
    from .merge import merge

    manifest = merge(args.folders, args.out, overwrite=args.overwrite)
    print_summary(Path(args.out), manifest)
    generation.print_verification(manifest.get("verification"))
    return 0


def qwen25_resize(args: argparse.Namespace):
    """The Qwen2.5-VL resize rule from ``--min-pixels``/``--max-pixels``; None when neither."""
    from .boxes import QWEN25_RESIZE, SmartResize

    if args.min_pixels is None and args.max_pixels is None:
        return None
    return SmartResize(
        min_pixels=args.min_pixels or QWEN25_RESIZE.min_pixels,
        max_pixels=args.max_pixels or QWEN25_RESIZE.max_pixels,
    )


def add_resize_arguments(parser: argparse.ArgumentParser) -> None:
    from .boxes import QWEN25_RESIZE

    for name in ("min", "max"):
        parser.add_argument(
            f"--{name}-pixels",
            type=int,
            default=None,
            help=f"qwen2.5-vl boxes: the {name}_pixels of your Qwen2.5-VL processor "
            f"(default {getattr(QWEN25_RESIZE, f'{name}_pixels')}, the released config)",
        )


def qwen25_budget_note() -> str:
    """The pixel budget ``qwen2.5-vl`` boxes assume and how to match a fine-tune's: Qwen2.5-VL
    boxes are pixels of the resized image, so another budget moves every box."""
    from .boxes import QWEN25_FINETUNE_RESIZE as F
    from .boxes import QWEN25_RESIZE as R

    side, default = F(256, 256)[0], R(256, 256)[0]
    return (
        f"qwen2.5-vl boxes are pixels of the image as the Qwen2.5-VL processor resizes it: by "
        f"default with the released min_pixels={R.min_pixels}, max_pixels={R.max_pixels} (the "
        f"chat-qwen2.5-vl config uses these). Training with other values moves every box (the "
        f"official fine-tune scripts pass --max_pixels {F.max_pixels} --min_pixels "
        f"{F.min_pixels}: a 256x256 image becomes {side}x{side} instead of {default}x{default}, "
        f"boxes {default / side - 1:.1%} off); "
        f"export with the same values: --min-pixels {F.min_pixels} --max-pixels {F.max_pixels}, "
        f"and score with them (medground eval ... --min-pixels {F.min_pixels} --max-pixels "
        f"{F.max_pixels})."
    )


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    report = evaluate(
        args.dataset,
        args.config,
        args.predictions,
        split=args.split,
        box_format=args.box_format,
        report_dir=args.report_dir,
        resize=qwen25_resize(args),
        min_coverage=args.min_coverage,
        strict=args.strict,
    )
    for warning in report["warnings"]:
        print(f"medground eval: warning: {warning} (--strict makes this an error)", file=sys.stderr)
    o = report["overall"]
    print(
        f"{report['counts']['targets']} targets, {o['n']} scored: "
        f"Acc@0.5 {o['acc@0.5']:.3f}  mIoU {o['miou']:.3f}  "
        f"parse failures {o['parse_failures']}  missing {o['missing']}  "
        f"mirror errors {o['mirror_errors']}"
    )
    print(f"report: {report['report_dir']}/report.md")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from .evaluation import write_baseline

    n = write_baseline(
        args.dataset, args.kind, args.out, split=args.split, prior_split=args.prior_split
    )
    print(f"wrote {n} {args.kind} predictions to {args.out}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from .viewer import write_gallery

    index = write_gallery(args.dataset, args.to, page_size=args.page_size)
    print(f"gallery: {index}")
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    from .builders import REGISTRY, get_builder_class

    for name in sorted(REGISTRY):
        cls = get_builder_class(name)
        source = getattr(cls, "SOURCE", None)
        title = f"{source.title} ({source.modality}, {source.license})" if source else ""
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:<20} {title or doc}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .formats.export import REFER_DIR, SPLIT_BY, ExportOptions, convert

    resize = qwen25_resize(args)
    options = ExportOptions(
        resize=resize,
        square=args.square,
        absolute_paths=args.absolute_paths,
        refs_pickle=args.refs_pickle,
    )
    counts = convert(args.src, args.format, args.to, getattr(args, "revision", None), options)
    rows = ", ".join(f"{split} {n}" for split, n in counts.items())
    print(f"Wrote {args.format} to {args.to}: {rows}")
    if args.format == "qwen2.5-vl":
        from .boxes import QWEN25_RESIZE

        used = resize or QWEN25_RESIZE
        print(
            f"  boxes assume the Qwen2.5-VL processor's min_pixels={used.min_pixels}, "
            f"max_pixels={used.max_pixels}: train with the same values"
        )
    if args.format == "ms-swift" and not args.absolute_paths:
        print(f"  image paths are relative to {args.to}: . {Path(args.to) / 'env.sh'} sets "
              "ROOT_IMAGE_DIR for ms-swift (or export with --absolute-paths)")  # fmt: skip
    if args.format == "coco":
        print(
            f"  refer API: REFER(data_root={str(args.to)!r}, dataset={REFER_DIR!r}, "
            f"splitBy={SPLIT_BY!r})"
        )
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from .hub import plan, publish

    todo = plan(args.out, args.repo_id, args.version)
    print(todo.summary())
    done = publish(
        args.out,
        args.repo_id,
        args.version,
        private=args.private,
        dry_run=args.dry_run,
        planned=todo,
    )
    if args.dry_run:
        print("dry run: nothing was uploaded")
    else:
        print(f"Published {args.repo_id} at {done['commit']}, tagged {args.version}")
        print(f'  load_dataset("{args.repo_id}", "grounding", revision="{args.version}")')
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medground",
        description="Build verified referring-grounding datasets from medical segmentation "
        "corpora, convert, publish and evaluate them.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a grounding dataset folder from a source corpus")
    b.add_argument("source", help="source builder name (see `medground sources`)")
    b.add_argument(
        "--data-dir", required=True, help="your copy of the corpus (a folder or an fsspec URL)"
    )
    b.add_argument("--out", required=True, help="output dataset folder (or an fsspec URL)")
    b.add_argument(
        "--work-dir",
        default=None,
        help="with a URL --out: where the folder is built before the upload "
        "(default ~/.cache/medground/staging; shared storage for Ray on several machines)",
    )
    b.add_argument("--config-name", default=None, help="builder config (default: the builder's)")
    b.add_argument(
        "--num-proc",
        type=int,
        default=None,
        help="worker processes (records, queries, shards); with --engine ray: tasks at a time",
    )
    b.add_argument(
        "--on-error",
        choices=ON_ERROR_CHOICES,
        default="raise",
        help="raise on bad input (default) or skip it and report why",
    )
    b.add_argument("--split-ratios", default=None, help="e.g. train=0.8,validation=0.1,test=0.1")
    b.add_argument(
        "--set",
        type=_option,
        action="append",
        metavar="KEY=VALUE",
        help="builder option (value parsed as JSON when it is JSON)",
    )
    b.add_argument("--options-file", default=None, help="YAML/JSON file of builder options")
    b.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    b.add_argument(
        "--configs",
        default=None,
        help="derived configs to write, comma-separated (e.g. coco,chat-qwen2.5-vl), 'all' or "
        "'none'; default: coco (each config stores its images once more; `medground export` "
        "writes any dialect as files instead)",
    )
    b.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="build only part I of N (0 <= I < N) of the corpus; `medground merge` joins them",
    )
    b.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local worker processes (--num-proc) or a Ray cluster (pip install medground-hf[ray])",
    )
    b.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join (default: a running one, else a local Ray instance)",
    )
    generation.add_arguments(b)
    b.set_defaults(func=cmd_build)

    g = sub.add_parser("generate", help="(re)generate and verify the queries of a built folder")
    g.add_argument("out", help="dataset folder written by `medground build`")
    generation.add_arguments(g)
    g.set_defaults(func=generation.cmd_generate)

    from .formats.names import FORMATS

    for name, source_help, summary in (
        (
            "export",
            "built dataset folder",
            "write a built folder as COCO or a chat dialect's files",
        ),
        ("convert", "built folder or Hub dataset repo id (ORG/NAME)", "export from folder or Hub"),
    ):
        e = sub.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=qwen25_budget_note(),
        )
        e.add_argument("src", help=source_help)
        if name == "convert":
            e.add_argument("--revision", default=None, help="Hub revision, e.g. tag v1.0.0")
        e.add_argument("--format", required=True, choices=FORMATS)
        e.add_argument("--to", required=True, help="output folder (JSON/JSONL + images/)")
        add_resize_arguments(e)
        e.add_argument(
            "--square",
            action="store_true",
            help="llava: boxes on the image padded to a centred square, for LLaVA-1.5 models "
            "trained with image_aspect_ratio pad (score with --box-format norm_square)",
        )
        e.add_argument(
            "--absolute-paths",
            action="store_true",
            help="chat formats: absolute image paths, usable from any working directory "
            "(default: relative to --to; ms-swift also gets --to/env.sh setting ROOT_IMAGE_DIR)",
        )
        e.add_argument(
            "--refs-pickle",
            action="store_true",
            help="coco: also write refcoco/refs(medground).p, the pickle the refer API loads "
            "(a pickle can run code when loaded: share the JSON instead where you can)",
        )
        e.set_defaults(func=cmd_export)

    u = sub.add_parser("publish", help="push a built folder to the Hub and tag the version")
    u.add_argument("out", help="built dataset folder")
    u.add_argument("--repo-id", required=True, help="ORG/NAME of the Hub dataset repo")
    u.add_argument("--version", required=True, help="version tag vX.Y.Z (never overwritten)")
    u.add_argument("--private", action="store_true", help="create the repo as private")
    u.add_argument("--dry-run", action="store_true", help="check and list, upload nothing")
    u.set_defaults(func=cmd_publish)

    m = sub.add_parser("merge", help="merge built folders of several sources into one dataset")
    m.add_argument("folders", nargs="+", help="built dataset folders, one per source")
    m.add_argument("--out", required=True, help="merged dataset folder")
    m.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    m.set_defaults(func=cmd_merge)

    r = sub.add_parser("verify", help="verify your own queries against a built folder")
    generation.add_verify_arguments(r)
    r.set_defaults(func=cmd_verify)

    s = sub.add_parser("sources", help="list the source builders")
    s.set_defaults(func=cmd_sources)

    from .evaluation import KINDS, MIN_COVERAGE
    from .evaluation.answers import BOX_FORMATS

    e = sub.add_parser("eval", help="score model predictions against a built dataset folder")
    e.add_argument("--dataset", required=True, help="built dataset folder")
    e.add_argument(
        "--config",
        default="grounding",
        help="config the predictions answer (grounding, coco, chat-<dialect>): sets the box format",
    )
    e.add_argument("--predictions", required=True, help='JSONL of {"id", "output"|"bbox_xyxy"}')
    e.add_argument("--split", default=None, help="evaluate one split (default: all)")
    e.add_argument("--box-format", choices=BOX_FORMATS, default=None, help="override the format")
    e.add_argument("--report-dir", default=None, help="default: <predictions stem>-eval/")
    add_resize_arguments(e)
    e.add_argument(
        "--min-coverage",
        type=float,
        default=MIN_COVERAGE,
        help="warn when the predictions answer fewer than this share of the targets "
        f"(default {MIN_COVERAGE})",
    )
    e.add_argument(
        "--strict", action="store_true", help="fail instead of warning when under --min-coverage"
    )
    e.set_defaults(func=cmd_eval)

    bl = sub.add_parser("baseline", help="write baseline predictions (JSONL, canonical pixels)")
    bl.add_argument("--dataset", required=True, help="built dataset folder")
    bl.add_argument("--kind", choices=KINDS, required=True)
    bl.add_argument("--out", required=True, help="predictions JSONL to write")
    bl.add_argument("--split", default=None, help="predict one split (default: all)")
    bl.add_argument("--prior-split", default="train", help="split the centre prior is fit on")
    bl.set_defaults(func=cmd_baseline)

    v = sub.add_parser("view", help="write a static HTML gallery of a built dataset folder")
    v.add_argument("dataset", help="built dataset folder")
    v.add_argument(
        "--to", default=None, help="gallery folder (default: <dataset>-viewer next to it)"
    )
    v.add_argument("--page-size", type=int, default=24, help="items per page")
    v.set_defaults(func=cmd_view)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in (
        "datasets",
        "huggingface_hub",
        "filelock",
        "httpx",
        "httpx2",
        "botocore",
        "aiobotocore",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command != "build":  # only `build` writes or reads URLs
            refuse_urls(args)
        return args.func(args)
    except (InputError, MissingExtra, BuildError, PublishError, ValueError) as exc:
        close_bars()
        print(f"medground {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        close_bars()
        print(f"medground {args.command}: error: {system_error(exc)}", file=sys.stderr)
        if getattr(exc, "errno", None) in DISK_FULL:
            # file writers of the abandoned staging folder fail again as they are collected on
            # exit: not news, the line above is the report
            sys.unraisablehook = lambda unraisable: None
        return 2


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
FOLDER_ARGS = ("out", "src", "to", "folders", "dataset", "predictions")


def refuse_urls(args: argparse.Namespace) -> None:
    """Commands other than ``build`` read and write local folders: a URL is one clear line."""
    from .storage import StorageError, is_url

    for name in FOLDER_ARGS:
        value = getattr(args, name, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and is_url(item):
                raise StorageError(
                    f"{item}: medground {args.command} reads and writes local folders only; "
                    "copy the folder first (e.g. aws s3 sync, gcloud storage rsync), or read it "
                    "with datasets.load_dataset(URL, storage_options=...)"
                )


def system_error(exc: OSError | sqlite3.Error) -> str:
    """A file-system (or cache database) failure in one line: the file and what went wrong.
    Outputs are written beside their folder and put in place only when complete, so a failure
    here (a full disk) never leaves a half-written folder."""
    if isinstance(exc, sqlite3.Error):
        return f"request cache: {exc}"
    where = f"{exc.filename}: " if exc.filename else ""
    text = f"{where}{exc.strerror or exc}"
    if exc.errno in DISK_FULL:
        text += " (no folder was replaced; free some space and rerun the same command to resume)"
    return text


if __name__ == "__main__":
    sys.exit(main())
