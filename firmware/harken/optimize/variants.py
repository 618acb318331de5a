"""Which language model a device runs when its board has little memory: the configured one, or a variant of it.

``harken models optimize --install`` puts variants of a model into the store, each
with its source's sha256 and its measured scores (``extra["optimized"]`` in its
manifest, with the source's own scores beside them). At start the device
compares them with its memory budget (``[board] llm_memory_mb``, the board
profile's by default):

- the configured model itself where it fits (it is the one its owner chose);
- else the variant that fits with the most right answers, then the lowest perplexity;
- else, when nothing fits, the smallest variant (a model that fits worst is
  still better than one that does not start).

With no variants of the configured model installed, nothing changes. A model
chosen since by a swap (``selection.json``) wins over all of this, and
``[board] llm_variants = false`` turns it off. This module only reads manifests:
no model is loaded or hashed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harken.models import catalog, store
from harken.models.resolve import pick


@dataclass(frozen=True)
class LlmChoice:
    model: str
    """What the device runs: the configured name, or a variant's store id."""
    variant: bool
    """Whether a variant was chosen in place of the configured model."""
    why: str
    budget_mb: int

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "variant": self.variant, "budget_mb": self.budget_mb, "why": self.why}


def _source_sha256(configured: str, data_dir: Path) -> str | None:
    """The sha256 of the configured model's GGUF, from the catalog or its manifest (not by reading the file)."""
    if "@" in configured:
        path = store.models_root(data_dir) / "llm" / configured
        try:
            return store.read_entry(path).manifest.primary.sha256
        except Exception:  # not installed or damaged: the worker will say so when it loads it
            return None
    item = catalog.known("llm", configured)
    if item is not None and item in catalog.CATALOG:
        return item.files[0].sha256
    entry = pick("llm", configured, data_dir)
    return entry.manifest.primary.sha256 if entry is not None else None


def _quality(scores: dict[str, Any]) -> tuple[float, float]:
    return float(scores.get("answers_right", 0)), -float(scores.get("ppl", float("inf")))


def choose(data_dir: Path, configured: str, budget_mb: int) -> LlmChoice:
    """The model to run for ``configured`` within ``budget_mb`` of resident memory, and why."""
    sha = _source_sha256(configured, data_dir)
    variants = []
    for entry in store.installed(data_dir, "llm") if sha else ():
        opt = entry.manifest.extra.get("optimized")
        if isinstance(opt, dict) and opt.get("source", {}).get("sha256") == sha and isinstance(opt.get("scores"), dict):
            variants.append((entry.manifest.installed_at, entry.id, opt))
    if not variants:
        return LlmChoice(configured, False, f"no optimized variants of {configured} are installed", budget_mb)
    source_scores = max(variants)[2].get("source_scores", {})  # the newest measurement of the source
    return decide(configured, source_scores, [(model_id, opt["scores"]) for _, model_id, opt in variants], budget_mb)


def decide(configured: str, source_scores: dict[str, Any], variants: list[tuple[str, dict[str, Any]]],
           budget_mb: int) -> LlmChoice:
    """The rule itself, on measured scores (``evaluate.Scores.to_dict()``): the source where it fits, else the
    best variant that fits, else the smallest. ``tools/bench-optimize`` applies it to each board too."""
    def mb(scores: dict[str, Any]) -> float:
        return float(scores.get("rss_mb", float("inf")))

    source_mb = mb(source_scores)
    if source_mb <= budget_mb:
        return LlmChoice(configured, False, f"{configured} needs {source_mb:.0f} MB, within the budget of {budget_mb} MB",
                         budget_mb)
    fits = [(model_id, s) for model_id, s in variants if mb(s) <= budget_mb]
    if fits:
        model_id, s = max(fits, key=lambda v: _quality(v[1]))
        return LlmChoice(model_id, True, f"{configured} needs {source_mb:.0f} MB, over the budget of {budget_mb} MB; "
                         f"the variant needs {mb(s):.0f} MB and answered {s.get('answers_right')}/{s.get('answers_total')} "
                         "right", budget_mb)
    model_id, s = min(variants, key=lambda v: mb(v[1]))
    return LlmChoice(model_id, True, f"nothing fits the budget of {budget_mb} MB ({configured} needs {source_mb:.0f} MB); "
                     f"running the smallest variant, which needs {mb(s):.0f} MB", budget_mb)
