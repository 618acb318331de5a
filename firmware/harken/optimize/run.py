"""``harken models optimize``: make smaller variants of a language model, measure them, pick one, install it.

A run, for one source GGUF (a file, or a model the device already knows by name):

1. **Calibrate** (only for recipes that drop blocks): drop each block alone and
   measure the perplexity on a calibration text (``evaluate.CALIBRATION``); then
   choose the blocks to drop greedily among the cheapest, measuring them
   together. Kept in ``calibration.json``, written after every measurement, so
   an interrupted calibration resumes.
2. **Make** each recipe's variant (``shrink.py``): drop blocks, narrow the
   feed-forward layers, re-quantize. Written as ``<name>.gguf.part`` and renamed
   when whole.
3. **Measure** each variant and the unmodified source (``evaluate.py``): size,
   resident memory with and without mmap, prompt and generation speed, time to
   the first token with the device's system prompt, perplexity on a held-apart
   text, and the answer set. Kept in ``<name>.json`` beside the variant: a
   variant whose ``.json`` and ``.gguf`` agree is never made or measured again.
4. **Report**: a table, and ``frontier.png`` (size × quality); the variant
   picked under the budget, with its recipe.
5. **Install** (``--install``): the picked variant goes into the model store with
   a manifest that records the source's sha256, the recipe and the scores, ready
   for ``harken models swap`` or the fleet's ``swap_model``.

The work directory is ``~/.cache/harken/optimize/<source sha256 prefix>/`` unless
given; it belongs to one source, and is refused for another.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

from harken import durable
from harken.errors import ModelError
from harken.models import shrink
from harken.models.catalog import sha256_file
from harken.models.templates import ChatTemplate
from harken.optimize import evaluate
from harken.optimize.evaluate import Scores

CALIBRATION_WINDOWS = 2
"""512-token windows of the calibration text per single-block removal (30 removals for SmolLM2-135M)."""
CANDIDATES = 5
"""Blocks (the cheapest alone) tried at each step of choosing several to drop."""
ACTIVITY_TOKENS = 512
"""Calibration tokens the feed-forward activations are averaged over."""


@dataclass(frozen=True)
class Recipe:
    """How a variant is made from the source. ``quant`` None: the source as it is (the baseline)."""

    quant: str | None
    embed: str | None = None
    """The token embedding's (and tied output's) own type; None: llama.cpp's choice for ``quant``."""
    drop: int = 0
    """Blocks dropped: the ones whose single removal costs least on the calibration text."""
    ffn: float = 1.0
    """Share of feed-forward channels kept (rounded down to a multiple of 32)."""

    @property
    def name(self) -> str:
        if self.quant is None:
            return "source"
        parts = [f"drop{self.drop}"] if self.drop else []
        parts += [f"ffn{round(self.ffn * 100)}"] if self.ffn < 1 else []
        parts.append(self.quant.lower())
        parts += [f"emb-{self.embed.lower()}"] if self.embed else []
        return "-".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"quant": self.quant, "embed": self.embed, "drop": self.drop, "ffn": self.ffn}

    @classmethod
    def parse(cls, text: str) -> Recipe:
        """``quant=Q4_0,embed=Q4_0,drop=2,ffn=0.83`` (only quant is required)."""
        fields: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("quant", "embed", "drop", "ffn"):
                raise ModelError(f"recipe {text!r}: write key=value pairs with keys quant, embed, drop, ffn "
                                 "(e.g. quant=Q4_0,embed=Q4_0,drop=2,ffn=0.83)")
            fields[key] = value.strip()
        if "quant" not in fields:
            raise ModelError(f"recipe {text!r} has no quant= (one of {', '.join(shrink.QUANT_TYPES)})")
        try:
            recipe = cls(fields["quant"].upper(), fields["embed"].upper() if fields.get("embed") else None,
                         int(fields.get("drop", 0)), float(fields.get("ffn", 1.0)))
        except ValueError:
            raise ModelError(f"recipe {text!r}: drop must be a whole number and ffn a share such as 0.83") from None
        recipe.check()
        return recipe

    def check(self, info: shrink.Info | None = None) -> None:
        """ModelError if this recipe cannot be made (from ``info``'s model, when given)."""
        if self.quant is None:
            return
        if self.quant not in shrink.QUANT_TYPES:
            raise ModelError(f"recipe {self.name}: unknown weight type {self.quant}; known: {', '.join(shrink.QUANT_TYPES)}")
        if self.embed is not None and self.embed not in shrink.TENSOR_TYPES:
            raise ModelError(f"recipe {self.name}: unknown embedding type {self.embed}; known: {', '.join(shrink.TENSOR_TYPES)}")
        if not 0.25 <= self.ffn <= 1.0 or self.drop < 0:
            raise ModelError(f"recipe {self.name}: ffn must be a share between 0.25 and 1, drop 0 or more")
        if info is None:
            return
        if self.drop and info.depth_prunable:
            raise ModelError(f"recipe {self.name}: {info.depth_prunable}")
        if self.drop >= info.blocks // 2:
            raise ModelError(f"recipe {self.name}: dropping {self.drop} of {info.blocks} blocks leaves too little model")
        if self.ffn < 1 and info.width_prunable:
            raise ModelError(f"recipe {self.name}: cannot narrow the feed-forward layers: {info.width_prunable}")

    def ffn_keep(self, info: shrink.Info) -> int:
        return max(32, int(info.ffn * self.ffn) // 32 * 32)


SOURCE = Recipe(None)
DEFAULT_RECIPES: tuple[Recipe, ...] = (
    Recipe("Q8_0"),
    Recipe("Q5_0"),
    Recipe("Q4_0"),
    Recipe("Q4_0", "Q4_0"),
    Recipe("Q4_K_M"),
    Recipe("Q3_K_M", "Q4_0"),
    Recipe("Q2_K", "Q4_0"),
    Recipe("Q4_0", "Q4_0", drop=2),
    Recipe("Q4_0", "Q4_0", ffn=0.92),
    Recipe("Q4_0", "Q4_0", drop=2, ffn=0.92),
)
"""What ``optimize`` makes unless told otherwise; recipes a source cannot take (no block of Gemma 3 can be
dropped) are left out, with the reason printed. Deeper cuts were measured on SmolLM2-135M and break it without
fine-tuning (4 blocks dropped, or 16% of the feed-forward channels: 4-6 of 49 questions right, against 28):
ask for them with --recipe."""


@dataclass(frozen=True)
class Variant:
    recipe: Recipe
    path: Path
    sha256: str
    size: int
    scores: Scores
    made: dict[str, Any] = field(default_factory=dict)
    """What the recipe came to on this source: ``blocks_dropped``, ``ffn_kept`` (of ``ffn_width`` channels)."""

    @property
    def name(self) -> str:
        return self.recipe.name

    def quality(self) -> tuple[int, float]:
        """Higher is better: answers right first, then the lower perplexity."""
        return self.scores.answers_right, -self.scores.ppl


@dataclass
class Options:
    threads: int = 2
    context: int = 1024
    windows: int = 4
    """512-token windows of the held-apart text for each variant's perplexity."""
    questions: int | None = None
    """How many of the answer set's questions (None: all)."""
    timeout: float = 900.0
    template: ChatTemplate | None = None


@dataclass
class Run:
    """One source's work directory and what is known in it."""

    source: Path
    name: str
    """The source's name: what the variants are called after in the store."""
    work: Path | None
    """None: ``default_work`` of the source's sha256."""
    options: Options
    out: TextIO | None = sys.stderr
    sha256: str = ""
    model: shrink.Gguf | None = None
    variants: dict[str, Variant] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """The work directory (known once :meth:`open` ran)."""
        if self.work is None:
            raise ModelError("the optimize run is not open yet: call open() first")
        return self.work

    def say(self, line: str) -> None:
        if self.out is not None:
            print(line, file=self.out, flush=True)

    # -- the work directory --------------------------------------------------------------------------
    def open(self) -> None:
        """Check the source, claim (or resume) the work directory, and remove half-written files."""
        self.say(f"checking {self.source}")
        self.model = shrink.open_model(self.source)
        if not self.model.info.chat_template and self.options.template is None:
            raise ModelError(f"{self.source} has no chat template, so its answers cannot be measured the way a device "
                             "asks: give --chat-template (gemma, gemma-base, or a Jinja2 file)")
        self.sha256 = sha256_file(self.source)
        if self.work is None:
            self.work = default_work(self.sha256)
        self.work.mkdir(parents=True, exist_ok=True)
        marker = self.folder / "source.json"
        if marker.is_file():
            known = json.loads(marker.read_text())
            if known.get("sha256") != self.sha256:
                raise ModelError(f"{self.work} holds the work of another source ({known.get('path')}, sha256 "
                                 f"{str(known.get('sha256'))[:12]}…); give another --work directory or delete it")
            self.say(f"resuming in {self.work}")
        else:
            info = self.model.info
            durable.write_atomic(marker, json.dumps({"path": str(self.source), "name": self.name, "sha256": self.sha256,
                                                     "size": self.source.stat().st_size, "arch": info.arch,
                                                     "blocks": info.blocks, "ffn": info.ffn, "type": info.file_type},
                                                    indent=2) + "\n")
        for leftover in [*self.folder.glob("*.part"), *self.folder.glob("*.tmp.gguf")]:
            leftover.unlink()

    def _done(self, recipe: Recipe) -> Variant | None:
        """The variant of ``recipe`` made and measured in an earlier run, if its file is still the one measured."""
        record = self.folder / f"{recipe.name}.json"
        if not record.is_file():
            return None
        try:
            data = json.loads(record.read_text())
            path = self.source if recipe.quant is None else self.folder / f"{recipe.name}.gguf"
            if path.stat().st_size != data["size"]:
                return None
            return Variant(recipe, path, data["sha256"], data["size"], Scores.from_dict(data["scores"]), data.get("made", {}))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # damaged or half-written: made again

    # -- calibration ---------------------------------------------------------------------------------
    def _calibration(self) -> tuple[dict[str, Any], str]:
        """What ``calibration.json`` holds so far, and the calibration text."""
        path = self.folder / "calibration.json"
        return json.loads(path.read_text()) if path.is_file() else {}, evaluate.read_text(evaluate.CALIBRATION)

    def _save_calibration(self, data: dict[str, Any]) -> None:
        durable.write_atomic(self.folder / "calibration.json", json.dumps(data, indent=2) + "\n")

    def _without(self, blocks: list[int], text: str) -> float:
        """Perplexity on the calibration text of the source without ``blocks``."""
        assert self.model is not None
        scratch = self.folder / "calibrate.tmp.gguf"
        shrink.drop_blocks(self.model, scratch, blocks)
        try:
            return evaluate.perplexity_of(scratch, text, CALIBRATION_WINDOWS, self.options.threads)
        finally:
            scratch.unlink(missing_ok=True)

    def block_costs(self) -> list[tuple[int, float]]:
        """(block, perplexity without it) for every block, cheapest first; measured once, resumable."""
        return self._block_costs(*self._calibration())

    def _block_costs(self, data: dict[str, Any], text: str) -> list[tuple[int, float]]:
        assert self.model is not None
        costs: dict[str, float] = data.setdefault("without", {})
        blocks = self.model.info.blocks
        for block in range(blocks):
            if str(block) not in costs:
                self.say(f"calibrating: without block {block} ({block + 1}/{blocks})")
                costs[str(block)] = self._without([block], text)
                self._save_calibration(data)
        return sorted(((int(b), p) for b, p in costs.items()), key=lambda bp: bp[1])

    def blocks_to_drop(self, count: int) -> list[int]:
        """``count`` blocks to drop, chosen greedily: the cheapest alone, then each time the block among the
        cheapest few whose removal *together with those chosen* costs least (two blocks that are cheap alone
        can be costly together, e.g. neighbours doing one job)."""
        data, text = self._calibration()
        singles = [b for b, _ in self._block_costs(data, text)]
        together: dict[str, float] = data.setdefault("together", {})
        chosen = [singles[0]]
        while len(chosen) < count:
            best: tuple[float, int] | None = None
            for block in [b for b in singles if b not in chosen][:CANDIDATES]:
                trial = sorted([*chosen, block])
                key = ",".join(map(str, trial))
                if key not in together:
                    self.say(f"calibrating: without blocks {trial}")
                    together[key] = self._without(trial, text)
                    self._save_calibration(data)
                if best is None or together[key] < best[0]:
                    best = (together[key], block)
            assert best is not None
            chosen.append(best[1])
        return sorted(chosen)

    def activity_tokens(self, model: Path) -> list[int]:
        from llama_cpp import Llama

        with shrink.quiet_stderr(self.folder / "vocab.log"):  # llama.cpp warns about a vocabulary-only context
            vocab = Llama(model_path=str(model), vocab_only=True, verbose=False)
        (self.folder / "vocab.log").unlink(missing_ok=True)
        return vocab.tokenize(evaluate.read_text(evaluate.CALIBRATION).encode(), add_bos=False)[:ACTIVITY_TOKENS]

    # -- making and measuring ------------------------------------------------------------------------
    def make(self, recipe: Recipe, made: dict[str, Any]) -> Path:
        """The variant's GGUF in the work directory (made from the source, step by step); what was done goes
        into ``made``."""
        assert self.model is not None
        final = self.folder / f"{recipe.name}.gguf"
        current, scratch = self.model, []
        try:
            if recipe.drop:
                drop = self.blocks_to_drop(recipe.drop)
                made["blocks_dropped"] = drop
                self.say(f"  {recipe.name}: dropping blocks {sorted(drop)}")
                path = self.folder / f"{recipe.name}.drop.tmp.gguf"
                scratch.append(path)
                shrink.drop_blocks(current, path, drop)
                current = shrink.open_model(path)
            if recipe.ffn < 1:
                keep = recipe.ffn_keep(current.info)
                made["ffn_kept"], made["ffn_width"] = keep, current.info.ffn
                self.say(f"  {recipe.name}: narrowing the feed-forward layers to {keep} of {current.info.ffn} channels")
                path = self.folder / f"{recipe.name}.ffn.tmp.gguf"
                scratch.append(path)
                shrink.narrow_ffn(current, path, keep, self.activity_tokens(current.path))
                current = shrink.open_model(path)
            self.say(f"  {recipe.name}: quantizing to {recipe.quant}" + (f", embedding {recipe.embed}" if recipe.embed else ""))
            part = final.with_name(final.name + ".part")
            shrink.requantize(current.path, part, recipe.quant or "", recipe.embed, self.folder / "quantize.log",
                              self.options.threads)
            durable.fsync(part)
            part.rename(final)
        finally:
            for path in scratch:
                path.unlink(missing_ok=True)
            (self.folder / "quantize.log").unlink(missing_ok=True)
        return final

    def measure(self, recipe: Recipe, path: Path, made: dict[str, Any]) -> Variant:
        o = self.options
        scores = evaluate.evaluate(path, template=o.template, threads=o.threads, context=o.context, windows=o.windows,
                                   questions=o.questions, timeout=o.timeout,
                                   progress=lambda line: self.say(f"  {recipe.name}: {line}"))
        variant = Variant(recipe, path, sha256_file(path), path.stat().st_size, scores, made)
        durable.write_atomic(self.folder / f"{recipe.name}.json", json.dumps(
            {"recipe": recipe.to_dict(), "made": made, "sha256": variant.sha256, "size": variant.size,
             "scores": scores.to_dict(), "measured": measured_on(o)}, indent=2) + "\n")
        return variant

    def run(self, recipes: Iterable[Recipe]) -> dict[str, Variant]:
        """Make and measure the source and every recipe that this source can take; what is done is kept."""
        assert self.model is not None
        todo, refused = [SOURCE], []
        for recipe in recipes:
            try:
                recipe.check(self.model.info)
            except ModelError as exc:
                self.say(f"skipping {exc}")
                refused.append(str(exc))
                continue
            if recipe not in todo:
                todo.append(recipe)
        if len(todo) == 1:
            raise ModelError(f"none of the recipes can be made from {self.source}: " + "; ".join(refused))
        for i, recipe in enumerate(todo, 1):
            done = self._done(recipe)
            if done is not None:
                self.say(f"[{i}/{len(todo)}] {recipe.name}: measured already")
                self.variants[recipe.name] = done
                continue
            self.say(f"[{i}/{len(todo)}] {recipe.name}")
            made: dict[str, Any] = {}
            path = self.source if recipe.quant is None else self.make(recipe, made)
            self.variants[recipe.name] = self.measure(recipe, path, made)
        return self.variants


def measured_on(options: Options) -> dict[str, Any]:
    import llama_cpp

    return {"machine": platform.machine(), "threads": options.threads, "context": options.context,
            "llama_cpp": getattr(llama_cpp, "__version__", "?")}


def default_work(sha256: str) -> Path:
    import os

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "harken" / "optimize" / sha256[:12]


# -- choosing ---------------------------------------------------------------------------------------------
def frontier(variants: Iterable[Variant]) -> list[Variant]:
    """The variants no other beats on both size and quality, smallest first."""
    best: list[Variant] = []
    for v in sorted(variants, key=lambda v: (v.size, [-q for q in v.quality()])):
        if not best or v.quality() > best[-1].quality():
            best.append(v)
    return best


def pick(variants: Iterable[Variant], budget_mb: float | None = None, budget_ms: float | None = None) -> tuple[Variant | None, str]:
    """The best variant within the budget (resident MB without mmap; or ms to the first token), and why."""
    pool = list(variants)
    fits = [v for v in pool if (budget_mb is None or v.scores.rss_mb <= budget_mb)
            and (budget_ms is None or v.scores.ttft_ms <= budget_ms)]
    limits = " and ".join(filter(None, (f"{budget_mb:g} MB resident" if budget_mb is not None else "",
                                        f"{budget_ms:g} ms to the first token" if budget_ms is not None else "")))
    if not fits:
        smallest = min(pool, key=lambda v: v.scores.rss_mb)
        return None, (f"nothing fits {limits}: the smallest, {smallest.name}, needs {smallest.scores.rss_mb:.0f} MB and "
                      f"{smallest.scores.ttft_ms:.0f} ms; raise the budget or add smaller recipes (--recipe)")
    chosen = max(fits, key=Variant.quality)
    within = f"within {limits}" if limits else "with no budget"
    return chosen, (f"{chosen.name}: the most right answers ({chosen.scores.answers_right}/{chosen.scores.answers_total}), "
                    f"then the lowest perplexity ({chosen.scores.ppl:.2f}), {within}")


# -- reporting ------------------------------------------------------------------------------------------
COLUMNS = ("variant", "file MB", "RSS MB", "RSS mmap MB", "prompt tok/s", "gen tok/s", "first token ms", "perplexity",
           "answers")


def table(variants: Iterable[Variant], on_frontier: set[str], chosen: str | None) -> str:
    """A Markdown table; the frontier's rows are marked *, the chosen one →."""
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for v in sorted(variants, key=lambda v: v.size):
        s = v.scores
        mark = ("→ " if v.name == chosen else "") + ("*" if v.name in on_frontier else "")
        rows.append(f"| {mark}{v.name} | {v.size / 1e6:.1f} | {s.rss_mb:.0f} | {s.rss_mmap_mb:.0f} | {s.prompt_tps:.0f} | "
                    f"{s.gen_tps:.1f} | {s.ttft_ms:.0f} | {s.ppl:.2f} | {s.answers_right}/{s.answers_total} |")
    return "\n".join(rows)


def plot(variants: list[Variant], best: list[Variant], chosen: Variant | None, path: Path, title: str) -> None:
    """``path``: answers right and perplexity against file size, the frontier drawn, the choice starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    for ax, value, label in ((top, lambda v: v.scores.answers_right, "answers right"),
                             (bottom, lambda v: v.scores.ppl, "perplexity (held-apart text, lower is better)")):
        xs = [v.size / 1e6 for v in variants]
        ax.scatter(xs, [value(v) for v in variants], color="tab:blue")
        for v in variants:
            ax.annotate(v.name, (v.size / 1e6, value(v)), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.plot([v.size / 1e6 for v in best], [value(v) for v in best], color="tab:green", label="frontier")
        if chosen is not None:
            ax.scatter([chosen.size / 1e6], [value(chosen)], marker="*", s=250, color="tab:red", label=f"chosen: {chosen.name}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_xlabel("file size (MB)")
    top.legend(loc="lower right")
    top.set_title(title)
    fig.tight_layout()
    part = path.with_name(path.name + ".part")
    fig.savefig(part, format="png", dpi=110)
    plt.close(fig)
    part.rename(path)


def manifest_extra(run: Run, chosen: Variant) -> dict[str, Any]:
    """What the store's manifest records about an optimized variant (``extra["optimized"]``)."""
    return {"optimized": {
        "source": {"name": run.name, "file": run.source.name, "sha256": run.sha256},
        "recipe": {"name": chosen.name, **chosen.recipe.to_dict(), **chosen.made},
        "scores": chosen.scores.to_dict(),
        "source_scores": run.variants[SOURCE.name].scores.to_dict(),
        "measured": measured_on(run.options),
    }}


def variant_name(source_name: str, recipe: Recipe) -> str:
    """The store name of a variant: the source's name and the recipe's, within the store's 64 characters."""
    return f"{source_name[: 63 - len(recipe.name)]}-{recipe.name}"

