"""Run a tracker over a DAVIS-layout folder under the chosen protocols and score it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.evaluation.dataset import SequenceInfo, list_sequences, read_json
from service.evaluation.metrics import BOUND_TH
from service.evaluation.passes import combine, count_steps, plan_passes, prompt_masks
from service.evaluation.protocol import Protocol, resolve
from service.evaluation.scoring import SequenceScore, Summary, score_sequence, summarise
from service.evaluation.trackers import Tracker
from service.io.images import encode_mask_png

StepCallback = Callable[[int], None]


@dataclass(frozen=True)
class Options:
    """protocols: names to run ("first", "best"); pattern: glob on sequence names;
    save_dir: write SAVE_DIR/<protocol>/<seq>/<frame>.png when set."""

    protocols: tuple[str, ...] = ("first", "best")
    pattern: str | None = None
    save_dir: Path | None = None
    bound_th: float = BOUND_TH


@dataclass(frozen=True)
class Job:
    """One sequence and its resolved protocols (in Options.protocols order)."""

    seq: SequenceInfo
    protocols: tuple[Protocol, ...]

    @property
    def steps(self) -> int:
        return sum(count_steps(p, self.seq) for p in self.protocols)


@dataclass(frozen=True)
class Result:
    """Summaries by protocol name; seconds: wall time of each sequence (all protocols)."""

    model: str
    root: Path
    summaries: Mapping[str, Summary]
    seconds: Mapping[str, float]
    steps: int


def prepare(root: Path, options: Options) -> list[Job]:
    """Resolve every sequence's protocols (protocols.json when present, else derived)."""
    table = read_json(root / "protocols.json")
    jobs = []
    for seq in list_sequences(root, options.pattern):
        listed = table is not None and seq.name in table and all(p in table[seq.name] for p in options.protocols)
        annotations = {} if listed else seq.read_annotations()  # only needed to derive
        jobs.append(Job(seq, tuple(resolve(p, seq.name, annotations, table) for p in options.protocols)))
    return jobs


def predict(tracker: Tracker, seq: SequenceInfo, frames: Sequence[np.ndarray] | None, protocol: Protocol,
            annotations: Mapping[str, np.ndarray], on_step: StepCallback | None = None) -> dict[str, np.ndarray]:
    """frame name -> predicted index mask [H, W] for every frame a pass reached."""
    prompts = prompt_masks(seq, protocol, annotations)
    plans = plan_passes(protocol, len(seq.frame_names), prompts)
    masks: dict[str, dict[int, np.ndarray]] = {plan.direction: {} for plan in plans}
    for direction, t, mask in tracker.run_plans(frames, plans):
        masks[direction][t] = mask
        if on_step is not None:
            on_step(1)
    outputs = [(plan.direction, plan.order[0], masks[plan.direction]) for plan in plans]
    return {seq.frame_names[t]: m for t, m in combine(outputs).items()}


def save_predictions(folder: Path, seq: SequenceInfo, shape: tuple[int, int],
                     predictions: Mapping[str, np.ndarray]) -> None:
    """FOLDER/<frame>.png for every frame (frames no pass reached are written empty)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in seq.frame_names:
        mask = predictions.get(name)
        (folder / f"{name}.png").write_bytes(encode_mask_png(np.zeros(shape, np.uint8) if mask is None else mask))


def run_job(tracker: Tracker, job: Job, options: Options,
            on_step: StepCallback | None = None) -> list[SequenceScore]:
    """Predict and score one sequence under each of its protocols."""
    seq = job.seq
    annotations = seq.read_annotations()
    frames = seq.read_frames() if tracker.needs_frames else None
    shape = next(iter(annotations.values())).shape
    scores = []
    for protocol in job.protocols:
        preds = predict(tracker, seq, frames, protocol, annotations, on_step)
        if options.save_dir is not None:
            save_predictions(options.save_dir / protocol.name / seq.name, seq, shape, preds)
        scores.append(score_sequence(seq.name, seq.dataset, protocol, annotations, preds, options.bound_th))
    return scores


def evaluate(root: Path, tracker: Tracker, options: Options, jobs: Sequence[Job] | None = None,
             on_step: StepCallback | None = None) -> Result:
    """Run and score every job (default: prepare(root, options)); see Result."""
    jobs = prepare(root, options) if jobs is None else jobs
    by_protocol: dict[str, list[SequenceScore]] = {p: [] for p in options.protocols}
    seconds: dict[str, float] = {}
    for job in jobs:
        start = time.perf_counter()
        for s in run_job(tracker, job, options, on_step):
            by_protocol[s.protocol].append(s)
        seconds[job.seq.name] = time.perf_counter() - start
    summaries = {p: summarise(p, scores) for p, scores in by_protocol.items()}
    return Result(tracker.name, root, summaries, seconds, sum(j.steps for j in jobs))
