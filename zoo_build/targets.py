"""`styledrop zoo targets`: one zoo measured against the targets of Zoo v2, in one run.

A zoo is adopted as the default only if it beats the committed one on these targets
(docs/zoo.md). Each comes from a command the project already has, run here with the
settings the targets name:
- from `zoo report` (`zoo_build.report`): the tokenizer's PSNR on renders it never saw,
  `t2i_top1` over the chosen subjects and against the judge on real renders, the ratio
  with a held-out descriptor appended, and the recognisability check (24 everyday
  prompts, 4 samples each; the grid is saved for a person to look at);
- generation: a timed `generate` of 16 images (4 prompts x 4) at the zoo's own decoding,
  loading and compiling included, as a user's first command meets it;
- the demo (`styledrop.demo`): subjects of its styled row that the judge names in 3 of 4
  of their samples (of the demo's 2: both), and the demo's own time (the install not
  included);
- the watercolor target: a round-1 adapter (300 steps) on the held-out watercolor house,
  "in watercolor painting style", and the judge's top-1 on 4 samples of each `world`
  prompt at the zoo's own guidance (`styledrop.evaluation`);
- optionally, the feedback-rounds experiment (`styledrop.rounds`, pool size K and n images
  per prompt): round 2 with CLIP feedback against round 1 in text score, paired by prompt.

Everything is written to one folder: `targets.json`, `targets.md` and each part's own
outputs (the report and its record for `zoo compare`, the demo, the watercolor evaluation,
the rounds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from styledrop.dataset import StyleExample
from styledrop.demo import DemoConfig, run_demo
from styledrop.prompt_sets import PromptSet, world_prompts
from styledrop.zoo.embedded import JUDGE_DIR
from zoo_build.machine import machine_description
from zoo_build.recognisability import RECOGNISABILITY_PROMPTS, samples_to_name

TARGETS_FORMAT = "styledrop-zoo-targets-1"
WATERCOLOR_DESCRIPTOR = "in watercolor painting style"
WATERCOLOR_CAPTION = "a house"
GENERATION_PROMPTS = ("a penguin", "a banana", "a car", "a tree")


@dataclass(frozen=True)
class Target:
    """A figure and the bound it must meet.

    Attributes:
        key: The figure's key in `targets.json`.
        label: What it measures, for the table.
        bound: The bound.
        at_least: True: the figure must be at least `bound`; False: at most.
    """

    key: str
    label: str
    bound: float
    at_least: bool = True

    def met(self, value: float | None) -> bool | None:
        """Whether `value` meets the bound (None where it was not measured)."""
        if value is None or not np.isfinite(value):
            return None
        return bool(value >= self.bound if self.at_least else value <= self.bound)

    def bound_text(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.bound:g}"


RECOGNISABILITY_NEEDED = 20
DEMO_SUBJECTS_NEEDED = 6

TARGETS = (
    Target("vq_psnr", "tokenizer PSNR on unseen renders (dB)", 26.0),
    Target("t2i_top1", "t2i_top1: the judge names what the base drew", 0.75),
    Target("t2i_over_judge_real", "t2i_top1 / judge_top1_real", 0.85),
    Target("t2i_descriptor_ratio", "t2i_top1 with a held-out descriptor / without", 0.9),
    Target(
        "recognisability_judge_prompts",
        f"of {len(RECOGNISABILITY_PROMPTS)} everyday prompts, named in 3 of 4 samples (judge)",
        RECOGNISABILITY_NEEDED,
    ),
    Target(
        "demo_subjects_named",
        "demo's styled row: subjects named in 3 of 4 samples (of 2: both; judge)",
        DEMO_SUBJECTS_NEEDED,
    ),
    Target("watercolor_subject_named", "watercolor round 1: judge top-1 on world subjects", 0.5),
    Target("rounds_text_gain_in_stderr", "round 2 CLIP − round 1, text, in standard errors", 2.0),
    Target("generation_seconds_per_image", "generation, 16 images, s per image", 2.0, False),
    Target("demo_minutes", "the demo's own time (no install), minutes", 10.0, False),
)


@dataclass(frozen=True)
class TargetsConfig:
    """What `measure_targets` runs.

    Attributes:
        t2i_subjects: Subjects `zoo report` draws (None: all of the vocabulary).
        seed: Seed of every draw and fine-tune.
        report_batch_size: Images per compiled generation batch of the report.
        demo: The demo's settings (None: skip the demo).
        watercolor_prompts: Prompts of the watercolor evaluation (None: skip it).
        watercolor_steps: Round-1 fine-tuning steps on the watercolor house.
        watercolor_lr: Its learning rate (None: the r1 adapter's default, the paper's).
        watercolor_images_per_prompt: Samples of each watercolor prompt.
        rounds_pool: K, pool images per round prompt of the rounds experiment (0: skip it).
        rounds_images_per_prompt: n of the rounds experiment's evaluation.
        rounds_prompts: Its evaluation prompts (None: the `world` set).
        generation_prompts: Prompts of the timed generation, 4 images each (empty: skip).
        content_first: The content first of every StyleDrop draw: the demo's, the
            watercolor round 1's and the rounds' (None: the zoo's own;
            `styledrop.guidance.GuidanceScales`).
    """

    t2i_subjects: int | None = None
    seed: int = 0
    report_batch_size: int = 32
    demo: DemoConfig | None = field(default_factory=DemoConfig)
    watercolor_prompts: PromptSet | None = field(default_factory=world_prompts)
    watercolor_steps: int = 300
    watercolor_lr: float | None = None
    watercolor_images_per_prompt: int = 4
    rounds_pool: int = 0
    rounds_images_per_prompt: int = 16
    rounds_prompts: PromptSet | None = None
    generation_prompts: tuple[str, ...] = GENERATION_PROMPTS
    content_first: float | None = None


def measure_targets(
    zoo: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    config: TargetsConfig = TargetsConfig(),
    log: Callable[[str], None] = print,
) -> dict:
    """Measures `zoo` on every target; writes `targets.json` and `targets.md` as it goes.

    Args:
        zoo: The zoo folder.
        data_dir: An emoji-world dataset of the zoo's recipe (`styledrop zoo data`).
        out_dir: Where every part writes.
        config: What to run.
        log: Receives a line per stage.

    Returns:
        The record written to `targets.json`: "figures" (the value of each target its
        parts measured), "met" (per target; None where not measured), "parts" (each
        part's own figures), "seconds" per part, "config" and "machine".
    """
    zoo, out_dir = Path(zoo), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict = {
        "format": TARGETS_FORMAT,
        "zoo": _shown(zoo),
        "config": _config_record(config),
        "machine": machine_description(),
        "figures": {},
        "parts": {},
        "seconds": {},
    }

    def part(name: str, run: Callable[[], tuple[dict, dict]]) -> None:
        log(f"== {name}")
        began = time.perf_counter()
        figures, details = run()
        record["seconds"][name] = time.perf_counter() - began
        record["figures"] |= figures
        record["parts"][name] = details
        write_targets(record, out_dir)

    part("report", lambda: _report(zoo, Path(data_dir), out_dir / "report", config, log))
    if config.generation_prompts:
        part("generation", lambda: _generation(zoo, config))
    if config.demo is not None:
        demo = replace(config.demo, seed=config.seed, content_first=config.content_first)
        part("demo", lambda: _demo(zoo, out_dir / "demo", demo))
    if config.watercolor_prompts is not None:
        part("watercolor", lambda: _watercolor(zoo, out_dir / "watercolor", config, log))
    if config.rounds_pool > 0:
        part("rounds", lambda: _rounds(zoo, out_dir / "rounds", config, log))
    return record


def write_targets(record: dict, out_dir: str | Path) -> None:
    """Writes `targets.json` and `targets.md` (the table) for `record`."""
    out_dir = Path(out_dir)
    figures = record["figures"]
    record["met"] = {t.key: t.met(figures.get(t.key)) for t in TARGETS}
    (out_dir / "targets.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    lines = [
        f"Targets of `{record['zoo']}`",
        "",
        *markdown_table([record]),
        "",
        "A person looks too: `report/report-recognisability.png` (the 24 prompts, 4 samples"
        " each, two prompts per row) and `demo/styled.png`.",
    ]
    (out_dir / "targets.md").write_text("\n".join(lines) + "\n")


def markdown_table(records: Sequence[dict], names: Sequence[str] | None = None) -> list[str]:
    """The targets as a Markdown table: one column of values (and "met") per record.

    Args:
        records: `targets.json` records.
        names: Column titles (default: the last two parts of each record's zoo folder).
    """
    names = names or ["/".join(Path(r["zoo"]).parts[-2:]) for r in records]
    header = ["target", "bound", *names]
    rows = [header, ["---"] * len(header)]
    for target in TARGETS:
        cells = []
        for r in records:
            value = r["figures"].get(target.key)
            met = target.met(value)
            cells.append(
                "not measured" if met is None else f"{value:.3g} ({'met' if met else 'not met'})"
            )
        rows.append([target.label, target.bound_text(), *cells])
    return ["| " + " | ".join(row) + " |" for row in rows]


def load_targets(path: str | Path) -> dict:
    """A `targets.json` record.

    Raises:
        ValueError: The file is not one `measure_targets` wrote.
    """
    record = json.loads(Path(path).read_text())
    if record.get("format") != TARGETS_FORMAT:
        raise ValueError(
            f"{path} is not a targets record ({TARGETS_FORMAT}); write one with"
            " `styledrop zoo targets`."
        )
    return record


def _shown(path: Path) -> str:
    """`path` relative to the working folder when inside it (a record to show), else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _config_record(config: TargetsConfig) -> dict:
    """The settings as JSON values (a prompt set by its name and size)."""
    out = asdict(config)
    for key in ("watercolor_prompts", "rounds_prompts"):
        prompts = getattr(config, key)
        out[key] = (
            None if prompts is None else {"name": prompts.name, "count": len(prompts.prompts)}
        )
    return json.loads(json.dumps(out))


def _report(zoo: Path, data_dir: Path, out_dir: Path, config: TargetsConfig, log) -> tuple:
    from zoo_build.report import zoo_report

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = zoo_report(
        zoo, data_dir, out_dir / "report.html", t2i_subjects=config.t2i_subjects,
        seed=config.seed, batch_size=config.report_batch_size, log=log,
        json_path=out_dir / "report.json",
    )  # fmt: skip
    real = figures["judge_top1_real"]
    picked = {
        "vq_psnr": figures["vq_psnr"],
        "t2i_top1": figures["t2i_top1"],
        "t2i_over_judge_real": figures["t2i_top1"] / real if real > 0 else float("nan"),
        "t2i_descriptor_ratio": figures["t2i_descriptor_ratio"],
        "recognisability_judge_prompts": figures["recognisability_judge_prompts"],
    }
    return picked, figures


def _generation(zoo: Path, config: TargetsConfig) -> tuple:
    import muse

    per_prompt = 4
    began = time.perf_counter()
    pipe = muse.load(zoo)
    pipe.generate(list(config.generation_prompts), num_images_per_prompt=per_prompt,
                  seed=config.seed)  # fmt: skip
    first = time.perf_counter() - began
    began = time.perf_counter()
    pipe.generate(list(config.generation_prompts), num_images_per_prompt=per_prompt,
                  seed=config.seed + 1)  # fmt: skip
    again = time.perf_counter() - began
    images = per_prompt * len(config.generation_prompts)
    details = {
        "images": images,
        "seconds_with_loading": first,
        "seconds_again": again,
        "decoding_steps": pipe.config.sampling.num_steps,
    }
    return {"generation_seconds_per_image": first / images}, details


def _demo(zoo: Path, out_dir: Path, config: DemoConfig) -> tuple:
    began = time.perf_counter()
    summary = run_demo(out_dir, config, base=zoo)
    minutes = (time.perf_counter() - began) / 60
    styled = summary["scores"]["round 1 (StyleDrop)"]
    needed = samples_to_name(config.images_per_prompt)  # as the recognisability check
    named = sum(count >= needed for count in styled["named_per_prompt"].values())
    figures = {"demo_subjects_named": float(named), "demo_minutes": minutes}
    return figures, {"scores": summary["scores"], "subjects": len(config.prompts)}


def _watercolor_example(zoo: Path, out_dir: Path) -> StyleExample:
    """The held-out watercolor house at the zoo's image size, as a style example.

    It is saved in `out_dir` as a PNG and read back as `finetune` and `rounds` read a
    user's image (the file's sha256 goes into the adapter's provenance).
    """
    from muse import checkpoint
    from styledrop.images import save_image
    from styledrop.inputs import load_images
    from styledrop.zoo.draws import heldout_references

    model = checkpoint.read_model_config(zoo)
    size = model.transformer.sample_size * model.vq.downscale_factor
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "watercolor_house.png"
    save_image(heldout_references("watercolor", ["house"], size=size)[0][0], path)
    image = load_images([path])[0]
    return StyleExample(image.pixels, WATERCOLOR_CAPTION, image.name, image.sha256)


def _watercolor(zoo: Path, out_dir: Path, config: TargetsConfig, log) -> tuple:
    import muse
    from adapters import AdapterSpec
    from feedback.scorer import ClipScorer
    from styledrop.evaluation import BASE_METHOD, Method, evaluate, write_html, write_json
    from styledrop.finetune import FinetuneConfig, finetune

    example = _watercolor_example(zoo, out_dir)
    reference = example.pixels  # [H, W, 3] uint8
    finetune_config = FinetuneConfig(
        adapter=AdapterSpec(kind="r1"), steps=config.watercolor_steps,
        learning_rate=config.watercolor_lr, seed=config.seed, checkpoint_every=100,
    )  # fmt: skip
    log(f"round 1 on the watercolor house, {config.watercolor_steps} steps")
    result = finetune(muse.load(zoo), [example], WATERCOLOR_DESCRIPTOR, finetune_config,
                      out_dir / "adapter")  # fmt: skip
    evaluation = evaluate(
        zoo, [Method(BASE_METHOD), Method("round 1", result.adapter_path)],
        config.watercolor_prompts, WATERCOLOR_DESCRIPTOR, reference[None], WATERCOLOR_CAPTION,
        ClipScorer.load(zoo / JUDGE_DIR), images_per_prompt=config.watercolor_images_per_prompt,
        seed=config.seed, content_first=config.content_first, heldout_style="watercolor",
        log=log,
    )  # fmt: skip
    write_json(evaluation, out_dir / "evaluation.json")
    write_html(evaluation, out_dir / "evaluation.html", reference[None])
    round1 = evaluation.method("round 1").summary()
    details = {m.name: m.summary() for m in evaluation.methods}
    details["lambda_b"] = evaluation.provenance["lambda_b"]
    details["content_first"] = evaluation.provenance["content_first"]
    return {"watercolor_subject_named": round1["subject_named"]}, details


def _rounds(zoo: Path, out_dir: Path, config: TargetsConfig, log) -> tuple:
    from feedback.scorer import ClipScorer
    from styledrop.rounds import RoundsConfig, run_rounds

    example = _watercolor_example(zoo, out_dir)
    rounds_config = RoundsConfig(
        round1_steps=config.watercolor_steps, round1_lr=config.watercolor_lr,
        round2_steps=config.watercolor_steps, pool_images_per_prompt=config.rounds_pool,
        eval_images_per_prompt=config.rounds_images_per_prompt, seed=config.seed,
        content_first=config.content_first,
    )  # fmt: skip
    evaluation = run_rounds(
        zoo, [example], WATERCOLOR_DESCRIPTOR, out_dir, ClipScorer.load(zoo / JUDGE_DIR),
        config.rounds_prompts or world_prompts(), rounds_config,
        reference_caption=WATERCOLOR_CAPTION, heldout_style="watercolor", log=log,
    )  # fmt: skip
    gain = evaluation.compare("round 2 CLIP feedback", "round 1")
    stderr = gain["text_stderr"]
    in_stderr = gain["text"] / stderr if stderr > 0 else float("nan")
    details = {
        "round2_clip_minus_round1": gain,
        "round2_clip_minus_random": evaluation.compare("round 2 CLIP feedback", "round 2 random"),
        "methods": {m.name: m.summary() for m in evaluation.methods},
    }
    return {"rounds_text_gain_in_stderr": in_stderr}, details
