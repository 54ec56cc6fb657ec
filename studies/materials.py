"""User-study materials (DESIGN section 8): sweep GIFs with opaque names, a manifest, and the answer key.

`build_materials(run_dir, out_dir, ...)` renders, for every method (default StylEx and Wu et al.), its top
`num_attributes` attributes (`AttributeSet.ranked` order), each as a sweep GIF on `images_per_attribute` images of
the AttFind image set (seeded draw, images not already of the attribute's target class first). Every method is
rendered on its own generator (its registered variant: Wu et al. on 'stylex-nocst') with its own edit rule
(`Method.edit`), and with the same protocol: ping-pong sweep of `frames` steps from shift 0 to the run's
`attfind.shift_size`, same frame durations, loop forever, `display_size` pixels, one shared palette, no classifier
probability and no frame drawn on the tiles (nothing that differs between methods or hints at the answer).

Items:
- Part 1 ('main'), per (method, attribute i): left = i on images 0 and 1; options A/B = i on image 2 and a
  distractor j (another top attribute of the same method, seeded) on image 3, in a balanced random order.
- Part 1 ('attention'): a main item's left pair with an unmistakable answer: the correct option is the very
  first left GIF, the other a static GIF of the unedited image 2.
- Part 2 ('describe'), per (method, attribute): the four GIFs of i on images 0-3.
- Part 3 (forward simulation, `studies.forward`): 'learn' items, per (method, attribute with a target class), the
  first two GIFs of i (Part 1's references) and the class name it pushes toward (`target_class`, shown to the
  participant); 'test' items, `forward_images` unedited stills (one-frame GIFs) of images that no GIF of this
  build shows (the split's images outside the AttFind set first), the classes as balanced as they allow. A test
  item's key is the classifier's decision on exactly the still shown (its class name), in the answer key like
  Part 1's letters.

Written under out_dir: `assets/<first 16 hex of sha256>.gif` (names reveal nothing) and `manifest.json` (study id,
settings, assets with their descriptive fields for analysis, items with their assets in display order
[left1, left2, A, B] or four for Part 2). The manifest never holds the answer key: `build_materials` returns it
in memory as {item_id: 'A' | 'B' | class name} for the caller to load into the study database, and writes
`answer_key.json` only with `write_answer_key=True`. The manifest stays on the server (the app sends GIF bytes,
never the manifest). `load_manifest` checks that every asset is there with its recorded sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from evaluation.methods import Method, registered
from studies.manifest import MANIFEST_FORMAT, MANIFEST_VERSION, load_manifest
from stylex import render
from stylex.artifacts import write_json
from stylex.attributes import Attribute, AttributeSet
from stylex.data import build_dataset
from stylex.editing import render as render_styles
from stylex.editing import resolve_precision
from stylex.errors import UserError
from stylex.explain import sweep
from stylex.pipeline import RunContext, attfind_indices, open_run
from stylex.run import RunDir
from stylex.runtime import code_version
from stylex.stats import encode_styles, load_stats

FRAME_MS = 80  # sweep frame duration, the same for every method (the ends are held longer by render.sweep_gif)
STATIC_MS = 700  # the two identical frames of an attention check's static GIF (Pillow merges them into one)
PART1_IMAGES = 4  # left 0, 1; options on 2 (attribute i) and 3 (distractor j)
LEARN_GIFS = 2  # GIFs per Part 3 learning screen: the attribute's two Part 1 references
ASSET_NAME = re.compile(r"^[0-9a-f]{16}\.gif$")

log = logging.getLogger("studies.materials")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _token(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"


def _sub_rng(seed: int, *parts) -> random.Random:
    """An independent, reproducible RNG per purpose (so adding one draw does not shift the others)."""
    return random.Random(_sha256(json.dumps([seed, *parts]).encode()))


class _Assets:
    """Writes GIFs under assets/ by content hash and records their manifest rows (deduplicated by bytes)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows: dict[str, dict] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, write, info: dict) -> str:
        """`write(path)` renders a GIF to path; returns its asset id."""
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            data = Path(write(Path(tmp) / "render.gif")).read_bytes()
        sha = _sha256(data)
        asset_id = sha[:16]
        if asset_id in self.rows:
            return asset_id
        path = self.folder / f"{asset_id}.gif"
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        with Image.open(path) as image:
            width, height = image.size
            n_frames = getattr(image, "n_frames", 1)
        self.rows[asset_id] = {"asset_id": asset_id, "sha256": sha, "relpath": f"assets/{asset_id}.gif",
                               "width": width, "height": height, "n_frames": n_frames, **info}
        return asset_id


def _load_method(run_dir: Path, key: str, variant: str, ctx: RunContext) -> Method:
    run = RunDir(run_dir)
    path = run.attributes(key)
    if not path.is_file():
        raise UserError(f"no attributes for method {key!r} at {path}; run `stylex benchmark` (all methods) or "
                        f"`stylex attfind` (StylEx variants) on {run_dir} first")
    stats = load_stats(run_dir, variant)
    if stats is None:
        raise UserError(f"no style statistics for the {variant!r} generator in {run.stats}; run "
                        f"`stylex benchmark` or `stylex attfind` on {run_dir} first")
    attributes = AttributeSet.load(path)
    stats.check_layout(ctx.model.generator.layout)
    return Method.of(key, attributes, stats)


def _predicted(ctx: RunContext, styles: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    predicted = []
    for start in range(0, styles[0].shape[0], 64):
        _, logits = render_styles(ctx.model, [s[start:start + 64] for s in styles], dtype)
        predicted.append(logits.argmax(1).cpu())
    return torch.cat(predicted)


def _image_order(predicted: torch.Tensor, a: Attribute, merged: bool,
                 rng: random.Random) -> tuple[Attribute, list[int]]:
    """Every position in the image set in a seeded order, images not of a's target class first. A binary merged
    attribute with no such image is shown toward the other class, as `render_attributes` does."""
    others = [i for i in range(len(predicted)) if int(predicted[i]) != a.target]
    if not others and merged and a.target is not None:
        a = a.flipped(1 - a.target)
        others = [i for i in range(len(predicted)) if int(predicted[i]) != a.target]
    preferred = set(others)
    rest = [i for i in range(len(predicted)) if i not in preferred]
    rng.shuffle(others)
    rng.shuffle(rest)
    return a, others + rest


def _balanced(count: int, rng: random.Random) -> list[str]:
    """'A'/'B' for `count` items, as even as possible (floor/ceil), in random order."""
    letters = (["A", "B"] * ((count + 1) // 2))[:count]
    if count % 2 and rng.random() < 0.5:
        letters[-1] = "B"
    rng.shuffle(letters)
    return letters


def _test_stills(ctx: RunContext, dataset, indices: list[int], styles: list[torch.Tensor], predicted: torch.Tensor,
                 in_gifs: set[int], count: int, assets: _Assets, ids: random.Random, rng: random.Random,
                 precision: str, display_size: int, domain: str) -> list[tuple[str, str, str]]:
    """Part 3 test images: (item id, asset id, classifier decision) for up to ``count`` images no GIF shows,
    ``count // classes`` per class of the classifier's decision (fewer where candidates run out). Candidates: images
    of the split outside the AttFind set (a seeded draw of at most ``8 * count``), then AttFind images no GIF was
    rendered on. Each is the generator's unedited image as a one-frame GIF, its decision the classifier's on that
    image, so the key is the classifier's answer on exactly what the participant sees."""
    dtype = resolve_precision(precision)
    outside = sorted(set(range(len(dataset))) - set(indices))
    rng.shuffle(outside)
    outside = outside[:8 * count]
    free = [p for p in range(len(indices)) if p not in in_gifs]
    rng.shuffle(free)
    pool = [s[free] for s in styles]
    if outside:
        extra = encode_styles(ctx.model, dataset, outside, device=ctx.device, progress=False)
        pool = [torch.cat([e, s]) for e, s in zip(extra, pool, strict=True)]
        predicted = torch.cat([_predicted(ctx, extra, dtype), predicted[free]])
    else:
        predicted = predicted[free]
    sources = [*outside, *(int(indices[p]) for p in free)]  # dataset index of every pool row
    quota = max(1, count // len(ctx.classes))
    by_class: dict[int, list[int]] = {}
    for row in range(len(sources)):  # chosen by `predicted`, the same render and classifier as the still below
        if len(by_class.setdefault(int(predicted[row]), [])) < quota:
            by_class[int(predicted[row])].append(row)
    if len(by_class) < 2:
        raise UserError(f"the {len(sources)} image(s) that no GIF shows do not cover two classifier decisions; Part "
                        "3 needs test images of at least two classes (use a split with more images than the AttFind "
                        "set, lower num_attributes or images_per_attribute, or pass forward_images=0)")
    stills = []
    for row in sorted(r for chosen in by_class.values() for r in chosen):
        images, logits = render_styles(ctx.model, [s[row:row + 1].expand(2, -1) for s in pool], dtype)

        def write(path, images=images):  # two identical frames, which Pillow stores as one
            return render.sweep_gif(images, None, path, size=display_size, frame_ms=STATIC_MS, frame_color=None)

        info = {"method": None, "domain": domain, "attr_rank": None, "image": sources[row], "static": True,
                "role": "forward_test"}
        stills.append((_token(ids), assets.add(write, info), ctx.classes[int(logits[0].argmax())]))
    return stills


def build_materials(run_dir: Path, out_dir: Path, methods: tuple[str, ...] = ("stylex", "wu"),
                    num_attributes: int = 6, images_per_attribute: int = 4, seed: int = 0, display_size: int = 256,
                    frames: int = 12, attention_items: int = 2, forward_images: int = 20, *,
                    write_answer_key: bool = False,
                    generators: dict[str, str] | None = None, device: str | None = None
                    ) -> tuple[Path, dict[str, str]]:
    """Render the study's GIFs and write out_dir/manifest.json; returns (manifest path, answer key).

    The answer key {item_id: 'A' | 'B'} covers every Part 1 item (main and attention), and {item_id: class name}
    every Part 3 test image (``forward_images`` of them; 0: no Part 3 material); it is returned in memory
    only (for the study database), unless `write_answer_key` also writes out_dir/answer_key.json.
    `generators` overrides the generator variant per method (default `VARIANTS`, each method on its own
    generator); any override is recorded in the manifest settings.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    methods = tuple(methods)
    if not methods or len(set(methods)) != len(methods):
        raise UserError(f"methods must be distinct and at least one, got {methods!r}")
    if num_attributes < 2:
        raise UserError(f"num_attributes must be >= 2 (Part 1 needs a distractor), got {num_attributes}")
    if images_per_attribute < PART1_IMAGES:
        raise UserError(f"images_per_attribute must be >= {PART1_IMAGES}, got {images_per_attribute}")
    if frames < 2:
        raise UserError(f"frames must be >= 2, got {frames}")
    if attention_items < 0 or forward_images < 0:
        raise UserError(f"attention_items and forward_images must be >= 0, got {attention_items}, {forward_images}")
    default_variants = {m.key: m.variant for m in registered()}
    variants = {**default_variants, **(generators or {})}
    unknown = [m for m in methods if m not in variants]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; methods: {', '.join(sorted(default_variants))}")

    contexts: dict[str, RunContext] = {}
    for variant in sorted({variants[m] for m in methods}):
        if not RunDir(run_dir).checkpoint(variant).is_file():
            raise UserError(f"no {variant!r} generator at {RunDir(run_dir).checkpoint(variant)}; run "
                            f"`stylex benchmark` (trains both generators) on {run_dir} first")
        contexts[variant] = open_run(run_dir, variant == "stylex", device=device)
    loaded = {m: _load_method(run_dir, m, variants[m], contexts[variants[m]]) for m in methods}

    first = contexts[variants[methods[0]]]
    config = first.config
    domain = config.data.dataset
    shift_size = config.attfind.shift_size
    precision = config.attfind.precision
    dataset = build_dataset(config.data, config.attfind.split)
    indices = attfind_indices(config, dataset)
    if len(indices) < PART1_IMAGES:
        raise UserError(f"the AttFind image set has {len(indices)} images; the study needs at least {PART1_IMAGES}")

    assets = _Assets(out_dir / "assets")
    ids = _sub_rng(seed, "item ids")
    items: list[dict] = []
    answers: dict[str, str] = {}
    lefts: list[tuple[str, str, int, list[str], int]] = []  # (method, image-2 static asset, rank, left pair, image)
    in_gifs: set[int] = set()  # image-set positions some GIF was rendered on: never a Part 3 test image
    first_styles = first_predicted = None
    for method_key in methods:
        method = loaded[method_key]
        ctx = contexts[variants[method_key]]
        layout = ctx.model.generator.layout
        dtype = resolve_precision(precision)
        styles = encode_styles(ctx.model, dataset, indices, device=ctx.device, progress=False)
        predicted = _predicted(ctx, styles, dtype)
        if first_styles is None:  # Part 3's stills: the first method's generator, the classifier of the run
            first_styles, first_predicted = styles, predicted
        ranked = method.attributes.ranked()[:num_attributes]
        if len(ranked) < 2:
            raise UserError(f"method {method_key!r} has {len(ranked)} attribute(s); Part 1 needs at least 2 "
                            "(rerun `stylex attfind` / `stylex benchmark` with more attfind.num_attributes)")

        def edit_rule(rows, edits, sizes, method=method, layout=layout):
            return method.edit(rows, layout, edits, sizes)

        def gif(a: Attribute, position: int, rank: int, static: bool = False, *, ctx=ctx, layout=layout,
                method_key=method_key, edit_rule=edit_rule, method=method, styles=styles) -> str:
            in_gifs.add(position)
            one = [s[position:position + 1] for s in styles]
            images, _ = sweep(ctx.model, one, method.stats, [(a.coordinate, a.direction)],
                              0.0 if static else shift_size, 2 if static else frames, precision, edit=edit_rule)

            def write(path):  # static: two identical frames, which Pillow stores as one (still loop=0)
                return render.sweep_gif(images, None, path, size=display_size,
                                        frame_ms=STATIC_MS if static else FRAME_MS, frame_color=None)

            name, channel = layout.locate(a.coordinate)
            info = {"method": method_key, "domain": domain, "attr_rank": rank, "image": int(indices[position]),
                    "static": static, "layer": name, "channel": channel, "direction": a.direction,
                    "target": None if a.target is None else method.attributes.classes[a.target]}
            return assets.add(write, info)

        def animated(asset_id: str) -> bool:
            return assets.rows[asset_id]["n_frames"] >= 2

        def draw(a: Attribute, rank: int, order: list[int], count: int, *, gif=gif,
                 method_key=method_key) -> list[tuple[int, str]]:
            """The first `count` images of `order` on which the GIF of `a` visibly changes (an edit toward a
            coordinate's extreme does nothing to an image already there); unchanged ones only to fill up."""
            moving, still = [], []
            for position in order:
                asset_id = gif(a, position, rank)
                (moving if animated(asset_id) else still).append((position, asset_id))
                if len(moving) == count:
                    break
            if len(moving) < count:
                log.warning("%s attribute %d changes only %d of the images it was tried on; %d GIF(s) show no "
                            "change", method_key, rank, len(moving), count - len(moving))
            return (moving + still)[:count]

        shown: list[tuple[Attribute, list[int], list[int]]] = []
        sweeps: dict[int, list[str]] = {}
        for rank, a in enumerate(ranked, 1):
            a, order = _image_order(predicted, a, method.attributes.merged is not None,
                                    _sub_rng(seed, "images", method_key, rank))
            drawn = draw(a, rank, order, images_per_attribute)
            shown.append((a, [position for position, _ in drawn], order))
            sweeps[rank] = [asset_id for _, asset_id in drawn]
        letters = _balanced(len(shown), _sub_rng(seed, "answers", method_key))
        for rank, (a, chosen, order) in enumerate(shown, 1):
            j = _sub_rng(seed, "distractor", method_key, rank).choice([r for r in sweeps if r != rank])
            # j on image 3 of i, or on the next image of i's order where j changes it (never a left image or 2)
            rest = [chosen[3]] + [p for p in order if p not in chosen]
            (_, distractor), = draw(shown[j - 1][0], j, rest, 1)
            correct = sweeps[rank][2]
            options = [correct, distractor] if letters[rank - 1] == "A" else [distractor, correct]
            item_id = _token(ids)
            items.append({"item_id": item_id, "part": 1, "kind": "main", "method": method_key, "domain": domain,
                          "attr_i": rank, "attr_j": j, "assets": [*sweeps[rank][:2], *options]})
            answers[item_id] = letters[rank - 1]
            lefts.append((method_key, gif(a, chosen[2], rank, static=True), rank, sweeps[rank][:2], chosen[2]))
        for rank in sweeps:
            items.append({"item_id": _token(ids), "part": 2, "kind": "describe", "method": method_key,
                          "domain": domain, "attr_i": rank, "attr_j": None, "assets": sweeps[rank][:PART1_IMAGES]})
        for rank, (a, _, _) in enumerate(shown, 1):
            if forward_images and a.target is None:  # nothing to label the learning screen with
                log.warning("%s attribute %d has no target class; Part 3 does not show it", method_key, rank)
            elif forward_images:
                items.append({"item_id": _token(ids), "part": 3, "kind": "learn", "method": method_key,
                              "domain": domain, "attr_i": rank, "attr_j": None, "assets": sweeps[rank][:LEARN_GIFS],
                              "target_class": method.attributes.classes[a.target]})

    attention_rng = _sub_rng(seed, "attention")
    picks = [lefts[attention_rng.randrange(len(lefts))] for _ in range(attention_items)]
    for letter, (method_key, static, rank, pair, _) in zip(_balanced(len(picks), attention_rng), picks, strict=True):
        options = [pair[0], static] if letter == "A" else [static, pair[0]]
        item_id = _token(ids)
        items.append({"item_id": item_id, "part": 1, "kind": "attention", "method": method_key, "domain": domain,
                      "attr_i": rank, "attr_j": None, "assets": [*pair, *options]})
        answers[item_id] = letter

    if forward_images:
        stills = _test_stills(first, dataset, indices, first_styles, first_predicted, in_gifs, forward_images, assets,
                              ids, _sub_rng(seed, "forward"), precision, display_size, domain)
        for item_id, asset_id, decision in stills:
            items.append({"item_id": item_id, "part": 3, "kind": "test", "method": None, "domain": domain,
                          "attr_i": None, "attr_j": None, "assets": [asset_id]})
            answers[item_id] = decision

    used = {asset for item in items for asset in item["assets"]}
    for path in (out_dir / "assets").glob("*.gif"):  # stale GIFs of an earlier build into the same folder
        if ASSET_NAME.match(path.name) and path.name[:16] not in used:
            path.unlink()
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "study_id": _sha256(json.dumps([seed, sorted(used)]).encode())[:16],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "code_version": code_version(),
        "run_dir": str(run_dir.resolve()),
        "settings": {"methods": list(methods), "generators": {m: variants[m] for m in methods},
                     "checkpoint_steps": {v: c.model.step for v, c in contexts.items()},
                     "num_attributes": num_attributes, "images_per_attribute": images_per_attribute, "seed": seed,
                     "display_size": display_size, "frames": frames, "frame_ms": FRAME_MS, "pingpong": True,
                     "loop": 0, "shift_size": shift_size, "precision": precision, "attention_items": attention_items,
                     "forward_images": forward_images,
                     "image_set": {"dataset": domain, "split": config.attfind.split, "seed": config.attfind.seed,
                                   "num_images": len(indices)}},
        "assets": [assets.rows[a] for a in sorted(used)],
        "items": items,
    }
    manifest_path = write_json(out_dir / "manifest.json", manifest)
    if write_answer_key:
        write_json(out_dir / "answer_key.json", dict(sorted(answers.items())))
    return manifest_path, answers


__all__ = ["build_materials", "load_manifest"]
