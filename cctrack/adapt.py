"""`cctrack adapt`: fine-tune the re-id model on a run's own tracklets, without labels, then re-link.

What the run knows without ground truth (reid.adapt explains the training):

- the crops of one tracklet are one person;
- two tracklets of one camera that overlap in time are two people;
- tracklets the linker joined with at least `link_probability` are one person;
- a person's corrections (OUT_DIR/corrections.yaml): `same` pairs are one person, `different` pairs two.

The adapted model gets its link calibration without labels too (reid.calibration.transported): the
run's stranger pairs (nearly all are two people) are measured under both models, and each similarity
keeps the evidence it had at the same distance above the strangers. Each curve is carried by its own
kind of pair: the cross-camera curve by pairs of different cameras (with one camera: that camera at
different times), the re-entry curve by pairs of one camera at different times, whose strangers the
training pushes apart most (its known negatives are people of one camera). Writes OUT_DIR/adapted.pt and
re-links the run with it; identities.json names that model.

With rounds > 1 it is self-training: each round adapts the model of the round before, on the groups that
model's own confident links make, so links the first model could not make at link_probability can enter
training later. Every round keeps the same known negatives and the same bar for positives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from cctrack import cache
from cctrack.config import RunConfig
from cctrack.device import resolve_device
from cctrack.distributed import RaySettings
from cctrack.embed import IMAGENET_BASELINE, embed_tracklets, load_embedder, model_identity
from cctrack.errors import CctrackError
from cctrack.link import center_per_camera, link_tracklets, tracklet_seconds
from cctrack.link.evidence import PAIRS_PER_CAMERA_PAIR, camera_pair_samples
from cctrack.link.layout import CameraLayout
from cctrack.outdir import output_lock
from cctrack.link.corrections import resolve_corrections
from cctrack.pipeline import RunSummary, configured_layout, corrections_of_run, relink, run, run_embeddings
from cctrack.table import TrackletTable

if TYPE_CHECKING:  # reid.adapt imports torch's training code: loaded only when adapting
    from reid.adapt import AdaptSettings

ADAPTED_WEIGHTS = "adapted.pt"
PREVIOUS_ROUND_WEIGHTS = "adapted.previous-round.pt"  # only while a later round trains
# Cross-camera and re-entry links enter training as positives only at this probability or above: a
# false one would teach the model that two people are one.
LINK_PROBABILITY = 0.95


@dataclass(frozen=True)
class AdaptRound:
    """One round of adaptation: the pseudo-identities it trained on and how its loss went."""

    groups: int  # pseudo-identities trained on (tracklets, after merging confident links)
    confident_links: int  # the links (cross-camera, re-entry, a person's) of at least link_probability that made them
    first_loss: float
    last_loss: float


@dataclass(frozen=True)
class AdaptSummary:
    weights: Path
    base_model: str
    steps: int  # per round
    rounds: tuple[AdaptRound, ...]
    known_negative_pairs: int  # tracklet pairs known to be two people
    strangers_before: Strangers  # stranger similarities under the base model
    strangers_after: Strangers  # the same, final model
    relinked: RunSummary

    @property
    def first_loss(self) -> float:
        return self.rounds[0].first_loss

    @property
    def last_loss(self) -> float:
        return self.rounds[-1].last_loss

    @property
    def groups(self) -> int:
        return self.rounds[-1].groups

    def text(self) -> str:
        rounds = f"{len(self.rounds)} rounds of {self.steps} steps" if len(self.rounds) > 1 else f"{self.steps} steps"
        lines = [f"adapted {self.base_model} on {self.groups} tracklet groups, {self.known_negative_pairs} known "
                 f"different pairs: {rounds}, loss {self.first_loss:.3f} -> {self.last_loss:.3f}"]
        if len(self.rounds) > 1:
            lines += [f"  round {k}: {r.groups} tracklet groups ({r.confident_links} links of at least the training "
                      f"probability), loss {r.first_loss:.3f} -> {r.last_loss:.3f}" for k, r in enumerate(self.rounds, 1)]
        return "\n".join(lines + [
            f"strangers' similarity (median, spread): {self.strangers_before.text()} -> {self.strangers_after.text()}",
            f"model written to {self.weights}; re-link later with --reid-checkpoint {self.weights}",
            self.relinked.text(),
        ])


def co_occurring(table: TrackletTable) -> np.ndarray:
    """(N, N) bool: tracklets of one camera whose frame spans overlap (one person is not twice in a frame)."""
    same_camera = table.camera_index[:, None] == table.camera_index[None, :]
    overlap = (table.first_frame[:, None] <= table.last_frame[None, :]) & (table.first_frame[None, :] <= table.last_frame[:, None])
    different = same_camera & overlap
    np.fill_diagonal(different, False)
    return different


def confident_groups(count: int, links, probability: float) -> np.ndarray:
    """(N,) group labels 0..G-1, numbered by first tracklet: tracklets joined by links of at least
    `probability` share a group."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for link in links:
        if link.confidence >= probability:
            parent[root(link.tracklet_a)] = root(link.tracklet_b)
    number: dict[int, int] = {}
    return np.array([number.setdefault(root(i), len(number)) for i in range(count)], np.int64)


MIN_STRANGER_PAIRS = 10


@dataclass(frozen=True)
class Strangers:
    """(median, spread) of the similarities of pairs that are nearly all two people, one per kind of pair
    the linker reads on its own curve: `across` cameras (with one camera: that camera at different times),
    and `within` one camera at different times, for re-entry (None: fewer than MIN_STRANGER_PAIRS)."""

    across: tuple[float, float]
    within: tuple[float, float] | None

    def text(self) -> str:
        within = "" if self.within is None else f" (one camera: {self.within[0]:.3f}, {self.within[1]:.3f})"
        return f"{self.across[0]:.3f}, {self.across[1]:.3f}{within}"


def stranger_similarity(table: TrackletTable, descriptors: np.ndarray, seed: int = 0) -> Strangers:
    """The run's stranger similarities (Strangers), descriptors centred as the linker does."""
    from reid.calibration import robust_centre_spread

    start, end = tracklet_seconds(table, CameraLayout.open(table.camera_names))
    centred = center_per_camera(descriptors, table.camera_index)
    cameras = len(table.camera_names)

    def similarity_of(keys: list[tuple[int, int]]) -> np.ndarray:
        rng = np.random.default_rng(seed)
        first, second = zip(*(camera_pair_samples(table, key, start, end, rng, PAIRS_PER_CAMERA_PAIR) for key in keys))
        first, second = np.concatenate(first), np.concatenate(second)
        return np.einsum("ij,ij->i", centred[first], centred[second])

    across = similarity_of([(i, j) for i in range(cameras) for j in range(i + 1, cameras)] or [(0, 0)])
    if len(across) < MIN_STRANGER_PAIRS:
        raise CctrackError(f"adapt needs at least {MIN_STRANGER_PAIRS} stranger pairs to carry the calibration over, "
                           f"the run has {len(across)}")
    # With one camera the across pairs are already that camera's pairs at different times.
    within = across if cameras == 1 else similarity_of([(i, i) for i in range(cameras)])
    return Strangers(robust_centre_spread(across),
                     robust_centre_spread(within) if len(within) >= MIN_STRANGER_PAIRS else None)


def check_adaptable(config: RunConfig, rounds: int = 1) -> None:
    """Fail at once on settings adapt cannot work with (`cctrack run --adapt` checks before detecting)."""
    if config.reid.descriptor != "reid" or config.reid.checkpoint == IMAGENET_BASELINE:
        raise CctrackError("cctrack adapt fine-tunes a trained CSSC model; the ImageNet and colour baselines cannot be adapted")
    if rounds < 1:
        raise CctrackError(f"cctrack adapt needs at least 1 round, got {rounds}")


def adapt(out_dir: Path, config: RunConfig, settings: AdaptSettings | None = None, link_probability: float = LINK_PROBABILITY,
          show_progress: bool = True, rounds: int = 1, corrections_path: Path | None = None) -> AdaptSummary:
    """Fine-tune the configured re-id model on the tracklets cached in `out_dir`, then re-link with it.
    rounds > 1 repeats it from the model just adapted, with the links that model makes (self-training:
    each round's confident links are the next round's positives). A person's corrections are read from
    `corrections_path`, else from out_dir/corrections.yaml if there."""
    from reid.adapt import AdaptSettings

    settings = settings or AdaptSettings()
    out_dir = Path(out_dir)
    check_adaptable(config, rounds)
    cache.load_run_info(out_dir)  # a folder without a run fails here, before the lock creates anything
    with output_lock(out_dir, "adapt"):
        return _adapt(out_dir, config, settings, link_probability, show_progress, rounds, corrections_path)


def run_and_adapt(video_dir: Path, out_dir: Path, config: RunConfig, settings: AdaptSettings | None = None,
                  link_probability: float = LINK_PROBABILITY, rounds: int = 1, show_progress: bool = True,
                  overwrite: bool = False, corrections_path: Path | None = None,
                  ray: RaySettings | None = None) -> tuple[RunSummary, AdaptSummary]:
    """`cctrack run --adapt`: the run, then `adapt` on its output. The videos are drawn once, with the
    adapted identities; if adaptation fails, with the run's own identities, so the run's outputs are
    complete either way."""
    if not config.export.link:
        raise CctrackError("--adapt needs linking: it fine-tunes on the run's tracklets and re-links them (drop --no-link)")
    check_adaptable(config, rounds)
    draw_videos = config.export.video
    first = run(video_dir, out_dir, config, show_progress, overwrite, corrections_path, ray, defer_videos=True)
    try:
        adapted = adapt(out_dir, config, settings, link_probability, show_progress, rounds, corrections_path)
    except CctrackError:
        if draw_videos:
            relink(out_dir, config, show_progress, corrections_path)
        raise
    return first, adapted


def _adapt(out_dir: Path, config: RunConfig, settings, link_probability: float, show_progress: bool,
           rounds: int, corrections_path: Path | None) -> AdaptSummary:
    from reid.errors import ReidError

    record = cache.load_run_info(out_dir)
    table = cache.load_tracklets(out_dir, record)
    # A person's corrections are labels too: `same` pairs are links of probability 1, `different` pairs
    # known negatives. A bad file fails here, before any work.
    constraints = resolve_corrections(corrections_of_run(out_dir, corrections_path), table)
    if len(table) < 2:
        raise CctrackError(f"cctrack adapt needs at least 2 tracklets; {out_dir} has {len(table)}")
    layout = configured_layout(config, record.camera_names)
    device = resolve_device(config.device)
    base = load_embedder(config.reid.checkpoint, device, config.reid.half, config.reid.batch_size)
    if base.calibration is None:
        raise CctrackError(f"{base.description} has no link calibration; fit one with `reid calibrate` before adapting")
    crops = cache.load_crops(out_dir, table)
    descriptors = run_embeddings(out_dir, table, base, model_identity(base)[1], crops, show_progress).descriptors  # usually cached
    different = co_occurring(table)
    pairs = constraints.cannot_link
    different[pairs[:, 0], pairs[:, 1]] = different[pairs[:, 1], pairs[:, 0]] = True
    strangers_before = stranger_similarity(table, descriptors)  # fails before the training if too few

    weights = out_dir / ADAPTED_WEIGHTS
    previous = out_dir / PREVIOUS_ROUND_WEIGHTS
    embedder, after, done, strangers = base, None, [], strangers_before
    # adapted_from (reid.adapt) names each round's base, a temporary file after the first round.
    first_round = {"adapted_on": str(out_dir.resolve()),
                   "first_round_base": {"path": str(Path(base.weights_path).resolve()), "sha256": model_identity(base)[1]}}
    try:  # adapted.pt is only left behind complete, with its calibration
        for number in range(1, rounds + 1):
            if number > 1:  # the last round's model is this round's base
                weights.replace(previous)
            round_base = previous if number > 1 else Path(base.weights_path)
            linked = link_tracklets(table, descriptors, config.link, layout, embedder.calibration, device, constraints)
            embedder, after, done_round, strangers = _adapt_once(
                round_base, embedder.calibration, strangers, table, crops, linked.links, link_probability, different,
                weights, config, settings, device, show_progress, {**first_round, "round": number})
            descriptors = after.descriptors
            done.append(done_round)
            previous.unlink(missing_ok=True)
    except BaseException as error:
        weights.unlink(missing_ok=True)
        previous.unlink(missing_ok=True)
        if isinstance(error, ReidError):
            raise CctrackError(str(error)) from None
        raise
    # The cache keys embeddings by the weights file's sha256, which the calibration just changed.
    cache.save_embeddings(out_dir, embed_tracklets_identity(after, embedder))
    relinked = relink(out_dir, replace(config, reid=replace(config.reid, checkpoint=str(weights))), show_progress,
                      corrections_path)
    return AdaptSummary(weights, base.description, settings.steps, tuple(done), int(different.sum() // 2),
                        strangers_before, strangers, relinked)


def _adapt_once(base_weights: Path, calibration, strangers_before: Strangers, table: TrackletTable, crops: list,
                links, link_probability: float, different: np.ndarray, weights: Path, config: RunConfig, settings, device,
                show_progress: bool, extra: dict):
    """One round: fine-tune base_weights on the groups its links of at least link_probability make, write
    `weights` with the base's calibration carried over from its strangers' similarity (strangers_before;
    the re-entry curve by the strangers within one camera, when both models have enough of them);
    (the adapted embedder, its embeddings, the round, its strangers' similarity)."""
    from reid.adapt import adapt_weights
    from reid.calibration import transported
    from reid.checkpoint import set_weights_extra

    group = confident_groups(len(table), links, link_probability)
    result = adapt_weights(base_weights, crops, group, different, weights, settings, device, progress=show_progress,
                           extra=extra)
    adapted = load_embedder(str(weights), device, config.reid.half, config.reid.batch_size)
    after = embed_tracklets(crops, adapted, show_progress)
    strangers_after = stranger_similarity(table, after.descriptors)
    within = None
    if strangers_before.within is not None and strangers_after.within is not None:
        within = (strangers_before.within, strangers_after.within)
    adapted.calibration = transported(calibration, strangers_before.across, strangers_after.across, reentry=within)
    set_weights_extra(weights, calibration=adapted.calibration.as_dict())
    confident = sum(link.confidence >= link_probability for link in links)
    return adapted, after, AdaptRound(int(group.max()) + 1, int(confident), result.first_loss, result.last_loss), strangers_after


def embed_tracklets_identity(embeddings, embedder):
    """`embeddings` labelled with the embedder's current identity (description and weights sha256)."""
    description, sha256 = model_identity(embedder)
    return replace(embeddings, model=description, model_sha256=sha256)
