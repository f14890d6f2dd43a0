"""The ``medground`` command line. Parsing only: each command's work lives in its own module."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from .build import BuildError, build
from .errors import ON_ERROR_CHOICES, InputError
from .generation import commands as generation
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
    options: dict = {}
    if args.options_file:
        loaded = yaml.safe_load(Path(args.options_file).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise BuildError(f"{args.options_file}: builder options must be a mapping")
        options.update(loaded)
    options.update(dict(args.set or []))
    return options


def print_summary(out: Path, manifest: dict) -> None:
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
    for skip in manifest["skipped"]:
        if skip["stage"] == "input":
            print(f"  skipped {skip['item']}: {skip['path']}: {skip['reason']}")


def cmd_build(args: argparse.Namespace) -> int:
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
    )
    print_summary(Path(args.out), manifest)
    generation.print_verification(manifest.get("verification"))
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    from .builders import REGISTRY, get_builder_class

    for name in sorted(REGISTRY):
        cls = get_builder_class(name)
        print(f"{name:<20} {cls.__doc__.strip().splitlines()[0] if cls.__doc__ else ''}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medground", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a grounding dataset folder from a source corpus")
    b.add_argument("source", help="source builder name (see `medground sources`)")
    b.add_argument("--data-dir", required=True, help="your copy of the corpus")
    b.add_argument("--out", required=True, help="output dataset folder")
    b.add_argument("--config-name", default=None, help="builder config (default: the builder's)")
    b.add_argument("--num-proc", type=int, default=None, help="worker processes")
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
    generation.add_arguments(b)
    b.set_defaults(func=cmd_build)

    g = sub.add_parser("generate", help="(re)generate and verify the queries of a built folder")
    g.add_argument("out", help="dataset folder written by `medground build`")
    generation.add_arguments(g)
    g.set_defaults(func=generation.cmd_generate)

    s = sub.add_parser("sources", help="list the source builders")
    s.set_defaults(func=cmd_sources)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("datasets", "huggingface_hub", "filelock", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (InputError, BuildError, ValueError, FileNotFoundError) as exc:
        print(f"medground {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
