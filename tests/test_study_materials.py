import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from baselines import wu
from studies.materials import build_materials, load_manifest
from stylex.errors import UserError
from stylex.pipeline import attfind_variant, open_run
from stylex.run import RunDir

SMALL = {"num_attributes": 2, "images_per_attribute": 4, "display_size": 64, "frames": 4, "attention_items": 2,
         "forward_images": 4}
# the tiny run has no w/o-CST generator: Wu et al. is selected and rendered on the StylEx one here
ON_STYLEX = {"wu": "stylex"}


@pytest.fixture(scope="module")
def run_with_attributes(tiny_run, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("materials") / "run"
    shutil.copytree(tiny_run, run_dir)
    ctx = open_run(run_dir, True)
    result = attfind_variant(ctx, progress=False)
    found = wu.attribute_set(result.styles, ctx.model.generator.layout, result.effects.predicted, ctx.classes,
                             num_attributes=4)
    found.save(RunDir(run_dir).attributes("wu"))
    return run_dir


@pytest.fixture(scope="module")
def built(run_with_attributes, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("study") / "materials"
    manifest_path, key = build_materials(run_with_attributes, out_dir, generators=ON_STYLEX, **SMALL)
    return out_dir, manifest_path, key


def test_manifest_assets_and_items(built):
    out_dir, manifest_path, key = built
    assert manifest_path == out_dir / "manifest.json"
    manifest = load_manifest(manifest_path)
    assert manifest["settings"]["generators"] == {"stylex": "stylex", "wu": "stylex"}
    names = sorted(p.name for p in (out_dir / "assets").iterdir())
    assert names == sorted(Path(a["relpath"]).name for a in manifest["assets"])
    for asset in manifest["assets"]:
        assert re.fullmatch(r"[0-9a-f]{16}\.gif", Path(asset["relpath"]).name)
        assert asset["sha256"].startswith(asset["asset_id"])
        with Image.open(out_dir / asset["relpath"]) as image:
            assert image.size == (64, 64) == (asset["width"], asset["height"])
            assert image.info.get("loop") == 0
            assert "comment" not in image.info
            assert image.n_frames == asset["n_frames"]
            if not asset["static"]:  # static attention GIFs: two identical frames, which Pillow stores as one
                assert image.n_frames >= 2
    kinds = Counter((item["part"], item["kind"]) for item in manifest["items"] if item["part"] != 3)
    assert kinds == {(1, "main"): 4, (2, "describe"): 4, (1, "attention"): 2}
    by_id = {a["asset_id"]: a for a in manifest["assets"]}
    for item in manifest["items"]:
        if item["part"] == 3:
            continue  # test_part3_material
        shown = [by_id[a] for a in item["assets"]]
        assert len(shown) == 4 and all(a["method"] == item["method"] for a in shown)
        if item["kind"] == "describe":
            assert {a["attr_rank"] for a in shown} == {item["attr_i"]}
            assert len({a["image"] for a in shown}) == 4
        if item["kind"] == "main":
            left, options = shown[:2], shown[2:]
            assert len({a["image"] for a in shown}) == 4  # left and right images disjoint
            assert {a["attr_rank"] for a in left} == {item["attr_i"]} and item["attr_j"] != item["attr_i"]
            correct = options["AB".index(key[item["item_id"]])]
            other = options[1 - "AB".index(key[item["item_id"]])]
            assert correct["attr_rank"] == item["attr_i"] and other["attr_rank"] == item["attr_j"]
            assert correct["asset_id"] not in item["assets"][:2]
        if item["kind"] == "attention":
            correct = item["assets"][2 + "AB".index(key[item["item_id"]])]
            other = item["assets"][3 - "AB".index(key[item["item_id"]])]
            assert correct == item["assets"][0] and by_id[other]["static"]


def test_answer_key_separate_and_balanced(built):
    out_dir, manifest_path, key = built
    manifest = json.loads(manifest_path.read_text())
    part1 = [item["item_id"] for item in manifest["items"] if item["part"] == 1]
    tests = [item["item_id"] for item in manifest["items"] if item["kind"] == "test"]
    assert sorted(key) == sorted(part1 + tests)
    assert {key[item_id] for item_id in part1} <= {"A", "B"}
    counts = Counter(key[item_id] for item_id in part1)
    assert abs(counts["A"] - counts["B"]) <= 2
    assert not (out_dir / "answer_key.json").exists()
    text = manifest_path.read_text().lower()
    assert "correct" not in text and "answer" not in text
    for item_id in key:
        assert item_id not in json.dumps([a["relpath"] for a in manifest["assets"]])


def test_rebuild_same_seed_is_identical_and_key_file(built, run_with_attributes, tmp_path):
    _, manifest_path, key = built
    again_path, again_key = build_materials(run_with_attributes, tmp_path / "again", generators=ON_STYLEX,
                                            write_answer_key=True, **SMALL)
    first, again = json.loads(manifest_path.read_text()), json.loads(again_path.read_text())
    assert [a["sha256"] for a in first["assets"]] == [a["sha256"] for a in again["assets"]]
    assert first["items"] == again["items"] and key == again_key
    assert json.loads((tmp_path / "again" / "answer_key.json").read_text()) == key


def test_load_manifest_detects_tampering(built, tmp_path):
    out_dir = tmp_path / "copy"
    shutil.copytree(built[0], out_dir)
    manifest = load_manifest(out_dir)
    victim = out_dir / manifest["assets"][0]["relpath"]
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(UserError, match="sha256"):
        load_manifest(out_dir / "manifest.json")
    victim.unlink()
    with pytest.raises(UserError, match="missing"):
        load_manifest(out_dir)


def test_missing_generator_or_attributes_is_a_clear_error(run_with_attributes, tmp_path):
    with pytest.raises(UserError, match="stylex benchmark"):  # Wu et al. needs the w/o-CST generator by default
        build_materials(run_with_attributes, tmp_path / "m", **SMALL)
    with pytest.raises(UserError, match="stylex benchmark"):
        build_materials(run_with_attributes, tmp_path / "m", methods=("stylex-nocst",), **SMALL)
    run_dir = tmp_path / "run"
    shutil.copytree(run_with_attributes, run_dir)
    RunDir(run_dir).attributes("wu").unlink()
    with pytest.raises(UserError, match="stylex attfind"):
        build_materials(run_dir, tmp_path / "m", generators=ON_STYLEX, **SMALL)


def test_part3_material(built):
    """Learning screens from the Part 1 reference GIFs, labelled with their attribute's class; test stills of images
    that no GIF shows, keyed by the classifier's decision; a Part 3 plan can be made from them."""
    from studies.design import forward_material
    from studies.forward import CONTROL, plan_forward_trials

    out_dir, manifest_path, key = built
    manifest = load_manifest(manifest_path)
    by_id = {a["asset_id"]: a for a in manifest["assets"]}
    main = {(item["method"], item["attr_i"]): item for item in manifest["items"] if item["kind"] == "main"}
    learn = [item for item in manifest["items"] if item["kind"] == "learn"]
    tests = [item for item in manifest["items"] if item["kind"] == "test"]
    assert learn and all(item["part"] == 3 for item in learn + tests)
    for item in learn:  # the attribute's two Part 1 references, toward the class its GIFs record
        assert item["assets"] == main[(item["method"], item["attr_i"])]["assets"][:2]
        assert {by_id[a]["target"] for a in item["assets"]} == {item["target_class"]}
    gif_images = {a["image"] for a in manifest["assets"] if a.get("role") != "forward_test"}
    stills = [by_id[item["assets"][0]] for item in tests]
    assert 2 <= len(tests) <= SMALL["forward_images"] and all(a["static"] for a in stills)
    assert not {a["image"] for a in stills} & gif_images  # new images only
    for still in stills:
        with Image.open(out_dir / still["relpath"]) as image:
            assert image.n_frames == 1 and image.size == (64, 64)
    assert len({key[item["item_id"]] for item in tests}) >= 2  # at least two classifier decisions
    images, screens, groups = forward_material(manifest["items"], key)
    assert groups == [CONTROL, "stylex", "wu"]
    plan = plan_forward_trials(images, "stylex", 0, screens, n_trials=2)
    assert [t["classifier_decision"] for t in plan["test"]] == [key[i["item_id"]] for t in plan["test"]
                                                                 for i in tests if i["assets"] == [t["image"]]]
