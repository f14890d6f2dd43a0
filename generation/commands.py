"""CLI side of generation: the shared options, the generator/judge factory, ``medground generate``
(re-generate a built folder in place) and the verification summary printed after a build."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from medground_hf.progress import quiet_datasets

from .base import GenerationError, Generator, Judge

__all__ = ["GenerationOptions", "add_arguments", "cmd_generate"]

GENERATORS = ("template", "anthropic", "openai-compatible", "none")
JUDGES = ("offline", "anthropic", "openai-compatible")
DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai-compatible": "OPENAI_API_KEY"}
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "medground"


@dataclass
class GenerationOptions:
    """How queries are generated and judged. API keys are never stored here: only the name of
    the environment variable that holds one."""

    generator: str = "template"
    model: str | None = None
    base_url: str | None = None
    seed: int = 0
    queries_per_target: int = 3
    judge: str = "offline"
    judge_model: str | None = None
    batch: bool = False
    cache: str | None = None
    read_cache: str | None = None  # an SQLite cache a folder cache consults on a miss (Ray)
    concurrency: int = 8
    api_key_env: str | None = None
    outline: bool = True
    timeout: float = 60.0
    max_attempts: int = 6
    retry_backoff: float = 1.0
    batch_poll: float = 30.0
    batch_wait: float = 24 * 3600.0
    forget_batches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"--generator must be one of {GENERATORS}, got {self.generator!r}")
        if self.judge not in JUDGES:
            raise ValueError(f"--judge must be one of {JUDGES}, got {self.judge!r}")
        if self.queries_per_target < 1 or self.concurrency < 1:
            raise ValueError("--queries-per-target and --concurrency must be at least 1")
        if self.batch and self.generator != "anthropic":
            raise ValueError("--batch (Message Batches) needs --generator anthropic")

    # How a run goes, not what it produces: left out of :meth:`identity`.
    RUNTIME = (
        "batch",
        "cache",
        "read_cache",
        "concurrency",
        "api_key_env",
        "timeout",
        "max_attempts",
        "retry_backoff",
        "batch_poll",
        "batch_wait",
        "forget_batches",
    )

    def identity(self) -> dict:
        """The options that decide the records: a rerun with the same identity resumes."""
        return {k: v for k, v in asdict(self).items() if k not in self.RUNTIME}

    def cache_path(self) -> Path:
        return Path(self.cache) if self.cache else DEFAULT_CACHE / "requests.sqlite"

    def api_key(self, backend: str) -> str:
        """The key from the environment; only its variable's name is ever shown."""
        name = self.api_key_env or DEFAULT_KEY_ENV[backend]
        key = os.environ.get(name)
        if not key:
            if backend == "openai-compatible" and self.api_key_env is None:
                return "not-needed"  # local servers (vLLM, Ollama) accept any key
            raise GenerationError(f"{backend}: set the API key in the environment variable {name}")
        return key


def make_generator(options: GenerationOptions) -> Generator:
    if options.generator == "template":
        from .templates import TemplateGenerator

        return TemplateGenerator(options.seed, options.queries_per_target)
    from .vlm import make_vlm_generator

    return make_vlm_generator(options)


def make_judge(options: GenerationOptions) -> Judge | None:
    if options.judge == "offline":
        return None
    from .vlm import make_vlm_judge

    return make_vlm_judge(options)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Generation options shared by ``medground build`` and ``medground generate``."""
    g = p.add_argument_group("query generation and verification")
    g.add_argument("--generator", choices=GENERATORS, default="template", help="default: template")
    g.add_argument("--model", default=None, help="VLM model id (anthropic / openai-compatible)")
    g.add_argument("--base-url", default=None, help="server URL (openai-compatible, proxies)")
    g.add_argument("--seed", type=int, default=0, help="template wording seed (default 0)")
    g.add_argument("--queries-per-target", type=int, default=3, metavar="K")
    g.add_argument("--judge", choices=JUDGES, default="offline", help="visual judge")
    g.add_argument("--judge-model", default=None, help="judge model (default: --model)")
    g.add_argument("--batch", action="store_true", help="Anthropic Message Batches (resumable)")
    g.add_argument(
        "--cache", default=None, help=f"request cache (default {DEFAULT_CACHE / 'requests.sqlite'})"
    )
    g.add_argument("--concurrency", type=int, default=8, help="parallel VLM requests")
    g.add_argument("--api-key-env", default=None, help="env variable holding the API key")
    g.add_argument(
        "--no-outline",
        dest="outline",
        action="store_false",
        help="do not outline the target in the image sent to the VLM",
    )
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per VLM request")
    g.add_argument(
        "--forget-batch",
        action="append",
        default=[],
        metavar="BATCH_ID",
        help="drop a saved Message Batch id the API no longer knows (its requests are sent "
        "again); repeatable",
    )
    g.add_argument(
        "--batch-wait",
        type=float,
        default=24 * 3600.0,
        help="seconds to wait for a Message Batch before stopping (re-run to resume)",
    )


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``medground verify`` (the command is :mod:`.reverify`)."""
    p.add_argument("out", help="dataset folder written by `medground build` or `medground merge`")
    p.add_argument(
        "--queries", required=True, help='JSONL, one {"id": record id, "text": query} per line'
    )
    p.add_argument("--report-dir", default=None, help="default: <queries stem>-verify/")
    p.add_argument("--judge", choices=JUDGES, default="offline", help="visual judge")
    p.add_argument("--judge-model", default=None, help="judge model (openai-compatible: required)")
    p.add_argument("--base-url", default=None, help="judge server URL (openai-compatible, proxies)")
    p.add_argument("--api-key-env", default=None, help="env variable holding the judge's API key")
    p.add_argument(
        "--cache", default=None, help=f"request cache (default {DEFAULT_CACHE / 'requests.sqlite'})"
    )
    p.add_argument("--concurrency", type=int, default=8, help="parallel judge requests")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per judge request")


def options_from_args(args: argparse.Namespace) -> GenerationOptions:
    return GenerationOptions(
        generator=args.generator,
        model=args.model,
        base_url=args.base_url,
        seed=args.seed,
        queries_per_target=args.queries_per_target,
        judge=args.judge,
        judge_model=args.judge_model,
        batch=args.batch,
        cache=args.cache,
        concurrency=args.concurrency,
        api_key_env=args.api_key_env,
        outline=args.outline,
        timeout=args.timeout,
        batch_wait=args.batch_wait,
        forget_batches=tuple(args.forget_batch),
    )


def print_verification(verification: dict | None) -> None:
    """Pass rates per stage and source, top rejection reasons, usage."""
    if not verification:
        return
    v = verification
    model = f" ({v['model']})" if v["model"] else ""
    print(
        f"  queries by {v['generator']}{model}, {v['prompt_version']}: generated "
        f"{v['queries_generated']} = kept {v['queries_kept']} + rejected {v['queries_rejected']}; "
        f"targets {v['targets_total']} = kept {v['targets_kept']} + rejected "
        f"{v['targets_rejected']}"
    )
    for s in v["stages"]:
        rate = s["passed"] / s["checked"] if s["checked"] else 1.0
        print(
            f"    {s['stage']:<14} {s['source']:<16} {s['passed']:>6}/{s['checked']:<6} {rate:6.1%}"
        )
    for r in v["reasons"][:8]:
        print(f"    rejected {r['count']:>5} x [{r['stage']}] {r['reason']}")
    u = v["usage"]
    print(
        f"  usage: {u['requests']} requests, {u['cached']} cached, {u['input_tokens']} input / "
        f"{u['output_tokens']} output tokens, ${u['cost_usd']:.4f}"
    )


def run_generation(splits: Mapping, sources: list, options: GenerationOptions):
    """Generate and verify ``splits`` (datasets of records) of ``sources`` (SourceInfo objects or
    manifest entries); returns the :class:`~.pipeline.Outcome`."""
    from . import pipeline

    generator, judge = make_generator(options), make_judge(options)
    batch_size = 256 if options.generator == "template" else max(64, 32 * options.concurrency)
    try:
        return pipeline.run(
            splits, pipeline.labels_of(sources), generator, judge, batch_size=batch_size
        )
    finally:
        generator.close()
        if judge is not None:
            judge.close()


def write_outcome(out: Path, outcome) -> None:
    """The kept rows as the ``grounding`` config and the rejects as ``rejected``, per split."""
    from medground_hf.folder import write_split
    from medground_hf.staging import fault

    for config, parts in (("grounding", outcome.grounding), ("rejected", outcome.rejected)):
        for split, ds in parts.items():
            if len(ds):
                write_split(out, config, split, ds)
    fault("shards")


@quiet_datasets()
def generate_folder(out: Path, options: GenerationOptions) -> dict:
    """Re-generate and re-verify the queries of a built folder; returns the manifest.

    The new folder is written beside ``out`` and replaces it in one rename when complete; files
    of yours in ``out`` (anything but its shards, manifest and card) are carried over.
    """
    from datasets import Dataset, concatenate_datasets

    from medground_hf import PIPELINE_VERSION
    from medground_hf.build import COMMAND_KEY, finish_folder
    from medground_hf.folder import FILES, config_splits
    from medground_hf.integrity import check_folder
    from medground_hf.staging import carry_over, command_key, staged

    out = Path(out)
    manifest = check_folder(out)
    present = config_splits(out)
    if "grounding" not in present and "rejected" not in present:
        raise FileNotFoundError(f"{out}: no grounding or rejected shards to generate from")
    if options.generator == "none":
        raise ValueError("medground generate needs a generator (not 'none')")
    key = command_key(
        "generate",
        {
            "input": manifest[FILES],
            "generation": options.identity(),
            "pipeline_version": PIPELINE_VERSION,
        },
    )
    with staged(out, key) as stage:
        splits = {}
        for split in sorted({s for c in ("grounding", "rejected") for s in present.get(c, [])}):
            parts = [
                _targets_only(Dataset.from_parquet(files, cache_dir=str(stage.scratch)))
                for config in ("grounding", "rejected")
                if (files := [str(p) for p in sorted((out / config).glob(f"{split}-*.parquet"))])
            ]
            splits[split] = _by_image(_unique_targets(concatenate_datasets(parts)))
        outcome = run_generation(splits, manifest["sources"], options)
        write_outcome(stage.path, outcome)
        manifest["verification"] = outcome.verification
        manifest[COMMAND_KEY] = key
        finish_folder(stage.path, manifest)
        carry_over(out, stage.path)
    return manifest


def _targets_only(ds):
    """The canonical record columns of a grounding or rejected shard, queries cleared; a
    column that a folder built by an older version lacks (``context_boxes``) is added empty."""
    from medground_hf.record import GROUNDING_FEATURES

    extra = [c for c in ds.column_names if c not in GROUNDING_FEATURES]
    ds = ds.remove_columns(extra)
    missing = [c for c in GROUNDING_FEATURES if c not in ds.column_names]

    def fill(batch):
        n = len(batch["id"])
        return {"queries": [[] for _ in range(n)], **{c: [None] * n for c in missing}}

    ds = ds.map(fill, batched=True)
    return ds.cast(GROUNDING_FEATURES)


def _unique_targets(ds):
    """Each target once: a target may have a grounding row and several rejected rows."""
    seen: set[str] = set()

    def first(ids: list[str]) -> list[bool]:
        keep = []
        for i in ids:
            keep.append(i not in seen)
            seen.add(i)
        return keep

    return ds.filter(first, input_columns="id", batched=True, load_from_cache_file=False)


def _by_image(ds):
    """The rows of one image together, in their order otherwise: a target rejected as a whole
    sits in another config than its image's kept targets (the COCO export needs an image's rows
    adjacent)."""
    import numpy as np

    order = np.argsort(np.asarray(ds["image_id"], dtype=object), kind="stable")
    return ds.select(order)


def cmd_generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    manifest = generate_folder(out, options_from_args(args))
    print(f"Generated queries in {out}")
    print_verification(manifest.get("verification"))
    return 0
