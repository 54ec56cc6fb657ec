"""AttFind (DESIGN section 6): the effect tensor, then greedy selection of classifier-specific attributes.

Step 1, `compute_effects`: effect[n, d, k, c] = change of classifier logit c when conv coordinate k of image
n is shifted toward its minimum (d=0) or maximum (d=1) over the image set, relative to the classifier on the
unedited reconstruction. The published code runs the whole generator for every (image, coordinate,
direction) at batch 1; here one forward carries many edits, and each runs only the layers from the edited
one on, resumed from the cached state entering it (`Generator.synthesize(start=i, state=states[i])`).
Results are written in chunks of images, so a killed run resumes where it stopped, and chunks are shared
out over `torchrun` processes. `screen=M` computes the exact effects of only the coordinates that first-order
screening keeps (`stylex.screening`), in a folder of their own beside the exact chunks.

Step 2, `attfind`: the official greedy selection for one class (see its docstring); `merge_binary` the
official two-class merge; `find_attributes` runs both for a whole classifier.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from stylex.artifacts import DamagedArtifact, fingerprint, load_tagged, read_json, save_tagged, write_json
from stylex.attributes import Attribute, AttributeSet
from stylex.editing import autocast, resolve_precision, shifted
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.model import StylexModel
from stylex.progress import progress_bar
from stylex.runtime import Distributed, code_version
from stylex.screening import screen as screen_coordinates
from stylex.stats import StyleStats

log = logging.getLogger("stylex.attfind")

EFFECTS_FORMAT = "stylex-effects"
CHUNK_FORMAT = "stylex-effect-chunk"
CPU_MEMORY_BUDGET = 128 << 20  # bytes of activations per edit batch on CPU: larger batches gain nothing
# and glibc returns their big buffers to the OS after every forward (page faults dominate)
GPU_MEMORY_SHARE = 0.6  # share of free GPU memory one edit batch may take


# ---- step 1: the effect tensor --------------------------------------------------------------------------------

@dataclass
class Effects:
    effect: Tensor  # [N, 2, K, C] fp32: logit change per (image, direction, conv coordinate, class)
    baseline: Tensor  # [N, C] fp32: logits of the classifier on the unedited reconstructions
    meta: dict = field(default_factory=dict)
    # screened effects: the sorted conv coordinates whose effects were computed ([U] int64); the others hold 0,
    # which AttFind can never select (it needs a positive mean clipped effect). None: every coordinate.
    coordinates: Tensor | None = None

    @property
    def screened(self) -> bool:
        return self.coordinates is not None

    @property
    def predicted(self) -> Tensor:
        """[N] the class predicted on each reconstruction (AttFind's notion of an image's class)."""
        return self.baseline.argmax(dim=1)


def _effect_inputs(model: StylexModel, styles: Sequence[Tensor], stats: StyleStats, shift_size: float,
                 precision: torch.dtype, chunk_images: int) -> dict:
    """What the effects depend on: a resumed run must match all of it, or its chunks would mix two models."""
    return {
        "format": EFFECTS_FORMAT, "num_images": styles[0].shape[0], "conv_dim": model.generator.layout.conv_dim,
        "num_classes": model.classifier.num_classes, "shift_size": shift_size, "precision": str(precision),
        "chunk_images": chunk_images, "styles": fingerprint(list(styles)),
        "stats": fingerprint(stats.minimum, stats.maximum), "weights": fingerprint(model.generator, model.classifier),
    }


def edit_batch_size(model: StylexModel, styles: Sequence[Tensor], precision: torch.dtype,
                    requested: int = 0) -> int:
    """Edits per forward: `requested` if > 0, else sized so one batch of full-generator edits (the most
    expensive start layer) fits in a share of free GPU memory (measured with a probe batch), or in
    CPU_MEMORY_BUDGET bytes on CPU (estimated from the largest feature map)."""
    if requested > 0:
        return requested
    generator = model.generator
    device = next(generator.parameters()).device
    if device.type == "cuda":
        probe = 16
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with torch.no_grad(), autocast(device, precision):
            image, _ = generator.synthesize([s[:1].to(device).expand(probe, -1) for s in styles])
            model.classifier(image)
        per_row = max((torch.cuda.max_memory_allocated(device) - before) / probe, 1)
        free, _ = torch.cuda.mem_get_info(device)
        budget = GPU_MEMORY_SHARE * free
    else:
        layout = generator.layout
        largest = max(layer.dim * layer.resolution ** 2 for layer in layout.conv_layers)
        per_row = 6 * largest * torch.finfo(precision).bits // 8  # input, output, upsampling and noise temporaries
        budget = CPU_MEMORY_BUDGET
    return int(max(8, min(4096, budget // per_row)))


class _ChunkStore:
    """meta.json + chunk-NNNNN.pt files (each written atomically) in an effects folder.

    meta.json records the inputs the chunks were computed from and, for screened effects, the coordinates they
    hold (a resumed run must compute the same columns as the chunks it joins, even if a new screening pass
    would rank a near tie the other way). A chunk that cannot be read back (truncated by a full disk, damaged by
    a copy) is only a cache of work that can be redone: `has` names it in a warning, deletes it and reports it
    missing, so it is computed again."""

    def __init__(self, folder: Path | None, inputs: dict):
        self.folder = folder
        self.inputs = inputs
        self.record: dict | None = None  # what meta.json says (or would say, in memory) once known
        self._loaded: dict[int, tuple[Tensor, Tensor]] = {}
        self.reload()

    def reload(self) -> None:
        """Read and check meta.json when it is there (under torchrun, rank 0 may have just written it)."""
        if self.folder is None or not (self.folder / "meta.json").is_file():
            return
        meta_path = self.folder / "meta.json"
        try:
            stored = read_json(meta_path)
        except DamagedArtifact:
            stored = None
        if not isinstance(stored, dict):
            raise UserError(f"{meta_path} is damaged, so the effect chunks beside it cannot be checked; delete "
                            f"{self.folder} (or run with --recompute) to start over")
        if stored.get("inputs") != self.inputs:
            before = stored.get("inputs") if isinstance(stored.get("inputs"), dict) else {}
            changed = sorted(k for k in {*self.inputs, *before} if before.get(k) != self.inputs.get(k))
            raise UserError(f"{self.folder} holds effects computed with other inputs (differs in: "
                            f"{', '.join(changed)}); delete that folder (or run with --recompute) to start over")
        self.record = stored

    def start(self, coordinates: Tensor | None) -> None:
        """Record the inputs (and the screened coordinates) in meta.json, unless a matching record is there."""
        if self.record is not None:
            return
        self.record = {"inputs": self.inputs, "code_version": code_version()}
        if coordinates is not None:
            self.record["coordinates"] = coordinates.tolist()
        if self.folder is not None:
            write_json(self.folder / "meta.json", self.record)

    def coordinates(self) -> Tensor | None:
        """The screened coordinates of the record (None: exact effects of every coordinate)."""
        if self.record is None or "coordinates" not in self.record:
            return None
        stored, conv_dim = self.record["coordinates"], self.inputs["conv_dim"]
        if not (isinstance(stored, list) and stored and all(type(k) is int for k in stored)
                and stored == sorted(set(stored)) and stored[0] >= 0 and stored[-1] < conv_dim):
            raise UserError(f"{self.folder}/meta.json names no valid screened coordinates; delete {self.folder} "
                            "(or run with --recompute) to start over")
        return torch.tensor(stored, dtype=torch.long)

    @property
    def columns(self) -> int:
        """Coordinates per chunk: every conv coordinate, or the screened ones."""
        kept = self.coordinates()
        return self.inputs["conv_dim"] if kept is None else len(kept)

    def path(self, chunk: int) -> Path:
        assert self.folder is not None
        return self.folder / f"chunk-{chunk:05d}.pt"

    def has(self, chunk: int) -> bool:
        """Whether the chunk is stored and readable; a damaged one is deleted (with a warning) so it is redone."""
        if self.folder is None or not self.path(chunk).is_file():
            return False
        try:
            self._loaded[chunk] = self._load(chunk)
        except DamagedArtifact as err:
            log.warning("effect chunk %s is damaged (%s); deleting it and computing it again", err.path, err.reason)
            err.path.unlink(missing_ok=True)
            return False
        return True

    def write(self, chunk: int, effect: Tensor, baseline: Tensor) -> None:
        if self.folder is not None:
            save_tagged({"effect": effect, "baseline": baseline}, self.path(chunk), CHUNK_FORMAT)

    def read(self, chunk: int) -> tuple[Tensor, Tensor]:
        if chunk in self._loaded:
            return self._loaded.pop(chunk)
        try:
            return self._load(chunk)
        except DamagedArtifact as err:  # another process's chunk (torchrun): it is not ours to recompute
            raise UserError(f"effect chunk {err.path} is damaged ({err.reason}); run `stylex attfind` again to "
                            "recompute it") from None

    def _load(self, chunk: int) -> tuple[Tensor, Tensor]:
        path = self.path(chunk)
        payload = load_tagged(path, CHUNK_FORMAT)
        effect, baseline = payload.get("effect"), payload.get("baseline")
        if not (isinstance(effect, Tensor) and isinstance(baseline, Tensor) and effect.ndim == 4
                and effect.shape[1] == 2 and baseline.ndim == 2 and effect.shape[0] == baseline.shape[0]
                and effect.shape[3] == baseline.shape[1] and effect.shape[2] == self.columns):
            raise DamagedArtifact(path, f"not an effect chunk ({{'effect': [n, 2, {self.columns}, C], "
                                        "'baseline': [n, C]})")
        return effect, baseline


@torch.no_grad()
def _chunk_effects(model: StylexModel, styles: list[Tensor], stats: StyleStats, shift_size: float,
                   precision: torch.dtype, batch_size: int, bar, coordinates: Tensor | None = None
                   ) -> tuple[Tensor, Tensor]:
    """Effects of the conv edits of `coordinates` (sorted conv indices [U]; None: all K) on a few images:
    ([n, 2, U, C], baseline [n, C]), on CPU. With every coordinate the batches are exactly the unscreened
    ones, so a screen that keeps everything reproduces the exact tensor bit for bit."""
    generator, classifier = model.generator, model.classifier
    layout = generator.layout
    device = next(generator.parameters()).device
    n = styles[0].shape[0]
    if coordinates is None:
        coordinates = torch.arange(layout.conv_dim)
    with autocast(device, precision):
        image, states = generator.synthesize(styles, return_states=True)
        baseline = classifier(image).float()
    effect = torch.empty(n, 2, len(coordinates), classifier.num_classes, device=device)
    minimum, maximum = stats.minimum.to(device), stats.maximum.to(device)
    column = 0  # where this layer's coordinates start in the effect tensor's coordinate axis
    for spec in layout.conv_layers:
        block = slice(spec.conv_offset, spec.conv_offset + spec.dim)
        in_layer = coordinates[(coordinates >= block.start) & (coordinates < block.stop)] - block.start
        dim = len(in_layer)  # edited channels of this layer
        if dim == 0:
            continue
        in_layer = in_layer.to(device)
        targets = torch.stack([minimum[block], maximum[block]])  # [2, layer dim]
        # rows enumerate (image, direction, edited channel), image-major, so most batches hold one image
        for first in range(0, n * 2 * dim, batch_size):
            rows = torch.arange(first, min(first + batch_size, n * 2 * dim))
            image_of, rest = rows // (2 * dim), rows % (2 * dim)
            direction, position = rest // dim, rest % dim
            first_image, last_image = int(image_of[0]), int(image_of[-1])  # on CPU: no device sync
            image_of = image_of.to(device)
            # one image: a [1, ...] slice broadcasts its state and later styles to the batch (no copies)
            picked = slice(first_image, first_image + 1) if first_image == last_image else image_of
            state = states[spec.index].select(picked)
            direction, position = direction.to(device), position.to(device)
            channel = in_layer[position]
            layer_style = styles[spec.index][picked].expand(len(rows), -1).clone()
            row_index = torch.arange(len(rows), device=device)
            layer_style[row_index, channel] = shifted(layer_style[row_index, channel], targets[direction, channel],
                                                      shift_size)
            edited = [None] * spec.index + [layer_style] + [s[picked] for s in styles[spec.index + 1:]]
            with autocast(device, precision):
                out, _ = generator.synthesize(edited, start=spec.index, state=state)
                logits = classifier(out).float()
            effect[image_of, direction, column + position] = logits - baseline[image_of]
            bar.update(len(rows))
        column += dim
    return effect.cpu(), baseline.cpu()


def compute_effects(model: StylexModel, styles: Sequence[Tensor], stats: StyleStats, shift_size: float = 1.0, *,
                    out_dir: Path | None = None, chunk_images: int = 8, max_batch: int = 0, precision: str = "float32",
                    progress: bool = True, screen: int = 0) -> Effects:
    """The effect tensor [N, 2, K, C] of images given by their styles (one [N, dim] tensor per style layer, e.g.
    from `stats.encode_styles`).

    out_dir: folder for resumable chunks (None: keep everything in memory). Chunks already there are reused
        when everything they depend on matches (model weights, styles, statistics, shift, precision, screen).
    max_batch: edits per forward; 0 sizes it from free memory (`edit_batch_size`).
    precision: 'float32' (default) or 'bfloat16' (autocast for synthesis convs and classifier; opt-in).
    screen: 0 (default) computes every coordinate. M > 0 keeps, per class and direction, the M coordinates with
        the largest mean first-order effect (`stylex.screening`) and computes exact effects for their union
        only; the others stay 0 (`Effects.coordinates` names the computed ones). M >= K keeps every coordinate,
        which gives the exact tensor. Screened chunks live in out_dir/screen-M/, so exact and screened effects
        never stand in for each other.
    Under torchrun, process r computes chunks r, r + world, ...; all processes then read the full tensor
    from out_dir (which must be on a filesystem they share).
    """
    layout: StyleLayout = model.generator.layout
    stats.check_layout(layout)
    if len(styles) != layout.num_layers or any(s.shape[0] != styles[0].shape[0] for s in styles):
        raise UserError(f"styles must be {layout.num_layers} tensors [N, dim] with the same N (one per style layer)")
    if chunk_images < 1:
        raise UserError(f"chunk_images must be >= 1, got {chunk_images}")
    if not math.isfinite(shift_size) or shift_size <= 0:
        raise UserError(f"shift_size must be a finite number > 0, got {shift_size}")
    if not isinstance(screen, int) or isinstance(screen, bool) or screen < 0:
        raise UserError(f"screen must be an integer >= 0 (0: exact effects of every coordinate; M: keep M "
                        f"coordinates per class and direction), got {screen!r}")
    device = next(model.generator.parameters()).device
    dtype = resolve_precision(precision)
    dist = Distributed.from_environment(device)
    if dist.world_size > 1 and out_dir is None:
        raise UserError("sharding effects over torchrun processes needs an out_dir on a shared filesystem")
    num_images = styles[0].shape[0]
    inputs = _effect_inputs(model, styles, stats, shift_size, dtype, chunk_images)
    folder = Path(out_dir) if out_dir is not None else None
    if screen:  # exact runs keep their inputs as they were, so effects computed before screening stay valid
        inputs["screen"] = screen
        folder = folder / f"screen-{screen}" if folder is not None else None
    store = _ChunkStore(folder, inputs)
    if screen and store.record is None:
        if dist.is_main:  # one screening for all processes: each must compute columns of the same coordinates
            store.start(screen_coordinates(model, styles, stats, shift_size, screen))
        dist.barrier()
        store.reload()
    store.start(None)  # exact effects (a screened run has its record by now)
    coordinates = store.coordinates()
    if screen and coordinates is None:
        raise UserError(f"{folder}/meta.json does not say which coordinates were screened; delete {folder} (or "
                        "run with --recompute) to start over")
    if coordinates is not None:
        log.info("screening kept %d of %d conv coordinates (the best %d per class and direction to first order)",
                 len(coordinates), layout.conv_dim, screen)
    chunks = list(range(math.ceil(num_images / chunk_images)))
    mine = [c for c in chunks if c % dist.world_size == dist.rank]
    todo = [c for c in mine if not store.has(c)]
    if len(todo) < len(mine):
        log.info("resuming: %d of %d effect chunks already in %s", len(mine) - len(todo), len(mine), folder)
    batch_size = edit_batch_size(model, styles, dtype, max_batch) if todo else 0
    per_image = 2 * store.columns
    held: dict[int, tuple[Tensor, Tensor]] = {}
    rows_of = {c: slice(c * chunk_images, min((c + 1) * chunk_images, num_images)) for c in chunks}
    total = sum(rows_of[c].stop - rows_of[c].start for c in todo) * per_image
    with progress_bar(total=total, desc=f"effects ({dist.rank})" if dist.world_size > 1 else "effects", unit="edit",
                      unit_scale=True, disable=not progress or total == 0, smoothing=0.1) as bar:
        for chunk in todo:
            chunk_styles = [s[rows_of[chunk]].to(device).float() for s in styles]
            while True:
                done_before = bar.n
                try:
                    held[chunk] = _chunk_effects(model, chunk_styles, stats, shift_size, dtype, batch_size, bar,
                                                 coordinates)
                    break
                except torch.cuda.OutOfMemoryError:
                    if batch_size <= 1:
                        raise UserError("out of GPU memory even at one edit per forward; free the GPU or use "
                                        "--device cpu") from None
                    batch_size //= 2  # the probe underestimated (e.g. another process took memory): retry smaller
                    log.warning("out of GPU memory: retrying the chunk with %d edits per forward", batch_size)
                    torch.cuda.empty_cache()
                    bar.update(done_before - bar.n)
            store.write(chunk, *held[chunk])
    dist.barrier()
    parts = [held[c] if c in held else store.read(c) for c in chunks]
    computed = torch.cat([p[0] for p in parts])
    meta = {**store.inputs, "screen": screen, "edit_batch": batch_size, "code_version": code_version()}
    if coordinates is None:
        return Effects(computed, torch.cat([p[1] for p in parts]), meta)
    effect = computed.new_zeros(num_images, 2, layout.conv_dim, computed.shape[3])
    effect[:, :, coordinates] = computed
    meta.update(kept_coordinates=len(coordinates), kept_digest=fingerprint(coordinates))
    return Effects(effect, torch.cat([p[1] for p in parts]), meta, coordinates)


@torch.no_grad()
def reference_effects(model: StylexModel, styles: Sequence[Tensor], stats: StyleStats, shift_size: float = 1.0,
                      images: Sequence[int] | None = None, coordinates: Sequence[int] | None = None,
                      progress: bool = False) -> Tensor:
    """The published code's loop, for verification and benchmarks: one image, one coordinate, one direction,
    the whole generator and classifier per edit, batch 1, fp32. Returns [len(images), 2, len(coordinates), C]."""
    generator, classifier = model.generator, model.classifier
    layout = generator.layout
    device = next(generator.parameters()).device
    images = list(range(styles[0].shape[0])) if images is None else list(images)
    coordinates = list(range(layout.conv_dim)) if coordinates is None else list(coordinates)
    out = torch.empty(len(images), 2, len(coordinates), classifier.num_classes)
    bar = progress_bar(total=out[..., 0].numel(), desc="naive effects", unit="edit", disable=not progress)
    for row, n in enumerate(images):
        own = [s[n:n + 1].to(device).float() for s in styles]
        baseline = classifier(generator.synthesize(own)[0]).float()
        for column, k in enumerate(coordinates):
            name, channel = layout.locate(k)
            index = layout.layer(name).index
            for direction in (0, 1):
                edited = list(own)
                edited[index] = own[index].clone()
                target = stats.targets(direction)[k].to(device)
                edited[index][0, channel] = shifted(own[index][0, channel], target, shift_size)
                out[row, direction, column] = (classifier(generator.synthesize(edited)[0]).float() - baseline)[0].cpu()
                bar.update()
    bar.close()
    return out


# ---- step 2: attribute selection ------------------------------------------------------------------------------

def _effects_tensor(effects: Tensor | Effects) -> Tensor:
    tensor = effects.effect if isinstance(effects, Effects) else effects
    if not isinstance(tensor, Tensor) or tensor.ndim != 4 or tensor.shape[1] != 2:
        shape = list(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        raise UserError(f"effects must be a tensor [N, 2, K, C], got {shape}")
    return tensor


def attfind(effects: Tensor | Effects, predicted: Tensor, target: int, num_attributes: int = 10,
            threshold: float = 1.0, discard_inconsistent: bool = False) -> list[Attribute]:
    """Official AttFind for class `target` (Lang et al. 2021, Algorithm 1; the official notebook's semantics).

    Images: those whose predicted class (on the reconstruction) is not `target`. Candidates: every
    (coordinate, direction), scored by its effect on logit `target` clipped at 0. Greedy: pick the candidate
    with the largest mean clipped effect over the images not yet explained; the chosen coordinate leaves the
    pool in both directions; an image is explained once the summed clipped effects of the chosen attributes on
    it reach `threshold`. Stops at `num_attributes`, when every image is explained, or when no candidate has a
    positive mean. `discard_inconsistent`: at each step, skip coordinates whose raw mean effect over the
    remaining images is positive in both directions (the paper's rule)."""
    tensor = _effects_tensor(effects)
    n, _, k, c = tensor.shape
    predicted = torch.as_tensor(predicted)
    if predicted.shape != (n,):
        raise UserError(f"predicted must hold one class per image ([{n}]), got {list(predicted.shape)}")
    if not 0 <= target < c:
        raise UserError(f"target class {target} is outside the classifier's {c} classes")
    if num_attributes < 1 or not threshold > 0:
        raise UserError("num_attributes must be >= 1 and threshold > 0")
    raw = tensor[predicted.to(tensor.device) != target][..., target].double().reshape(-1, 2 * k)  # [n', 2K]
    if raw.shape[0] == 0:
        log.warning("no image is predicted as another class than %d: AttFind has nothing to explain", target)
        return []
    clipped = raw.clamp(min=0)
    active = torch.ones(raw.shape[0], dtype=torch.bool)
    available = torch.ones(2 * k, dtype=torch.bool)
    accumulated = torch.zeros(raw.shape[0], dtype=torch.float64)
    chosen: list[Attribute] = []
    while len(chosen) < num_attributes and active.any():
        mean = clipped[active].mean(dim=0)
        eligible = available.clone()
        if discard_inconsistent:
            both_raise = (raw[active].mean(dim=0).view(2, k) > 0).all(dim=0)  # [K]
            eligible &= ~both_raise.repeat(2)
        mean = torch.where(eligible, mean, torch.full_like(mean, -math.inf))
        best = int(mean.argmax())
        if not mean[best] > 0:
            break
        direction, coordinate = divmod(best, k)
        chosen.append(Attribute(coordinate, direction, float(mean[best]), target))
        available[[coordinate, k + coordinate]] = False
        accumulated += clipped[:, best]
        active &= accumulated < threshold
    return chosen


def merge_binary(effects: Tensor | Effects, toward_0: Sequence[Attribute], toward_1: Sequence[Attribute]
                 ) -> list[Attribute]:
    """The official two-class merge: the class-0 list, then the class-1 picks whose coordinate is not there yet
    with their direction flipped; all re-ranked by score = mean effect on logit 0 in the attribute's direction
    + mean effect on logit 1 in the opposite direction, over all images. Directions move images toward class
    0; the opposite directions move them toward class 1."""
    tensor = _effects_tensor(effects)
    if tensor.shape[3] != 2:
        raise UserError(f"the binary merge needs a two-class classifier, this one has {tensor.shape[3]} classes")
    merged: list[Attribute] = list(toward_0)
    present = {a.coordinate for a in merged}
    merged += [a.flipped() for a in toward_1 if a.coordinate not in present]
    means = tensor.double().mean(dim=0)  # [2, K, 2]
    scored = [Attribute(a.coordinate, a.direction, a.mean_effect, 0,
                        float(means[a.direction, a.coordinate, 0] + means[1 - a.direction, a.coordinate, 1]))
              for a in merged]
    return sorted(scored, key=lambda a: a.score, reverse=True)


def find_attributes(effects: Effects, classes: list[str], layout: StyleLayout, method: str,
                    num_attributes: int = 10, threshold: float = 1.0, discard_inconsistent: bool = False,
                    provenance: dict | None = None) -> AttributeSet:
    """AttFind for every class (one-vs-rest), plus the official merge for a two-class classifier."""
    if effects.effect.shape[3] != len(classes):
        raise UserError(f"the effects cover {effects.effect.shape[3]} classes but {len(classes)} class names were "
                        "given")
    predicted = effects.predicted
    per_class = {c: attfind(effects, predicted, c, num_attributes, threshold, discard_inconsistent)
                 for c in range(len(classes))}
    merged = merge_binary(effects, per_class[0], per_class[1]) if len(classes) == 2 else None
    settings = {"num_attributes": num_attributes, "threshold": threshold,
                "discard_inconsistent": discard_inconsistent, "num_images": effects.effect.shape[0],
                "shift_size": effects.meta.get("shift_size"),
                "images_per_class": torch.bincount(predicted, minlength=len(classes)).tolist()}
    if effects.screened:  # candidates were only the coordinates first-order screening kept (exact: no key, so
        # attribute files and the benchmark results cached on them stay what they were before screening existed)
        settings.update(screen=effects.meta["screen"], screened_coordinates=len(effects.coordinates))
    return AttributeSet(method, list(classes), per_class, merged, layout.summary(), settings,
                        {"code_version": code_version(), **(provenance or {})})
