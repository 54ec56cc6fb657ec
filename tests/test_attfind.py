import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stylex import attfind as attfind_module
from stylex.attfind import (
    attfind,
    compute_effects,
    find_attributes,
    merge_binary,
    reference_effects,
)
from stylex.attributes import Attribute, AttributeSet
from stylex.errors import UserError
from stylex.layout import StyleLayout
from stylex.stats import load_stats, save_stats

# ---- selection on hand-built effect tensors --------------------------------------------------------------------


def effects_on(values: dict, n: int, k: int, c: int = 2, target: int = 1) -> torch.Tensor:
    """effect[n, d, k, target] = value for {(n, d, k): value}, zero elsewhere."""
    effect = torch.zeros(n, 2, k, c)
    for (image, direction, coordinate), value in values.items():
        effect[image, direction, coordinate, target] = value
    return effect


GREEDY_CASE = {
    (0, 1, 0): 2.0, (0, 0, 1): 0.6, (0, 1, 2): -5.0,
    (1, 1, 0): 0.2, (1, 0, 1): 0.8, (1, 1, 2): 0.5, (1, 0, 0): 0.9,
    (2, 0, 2): 100.0,  # image 2 is predicted as the target class: it must not count
}


def as_tuples(attributes):
    return [(a.coordinate, a.direction, round(a.mean_effect, 6)) for a in attributes]


def test_attfind_greedy_threshold_and_pool():
    effect = effects_on(GREEDY_CASE, n=3, k=3)
    predicted = torch.tensor([0, 0, 1])
    # step 1: means over images 0, 1: (k0, up) 1.1 wins; image 0 (2.0 >= 1) is explained.
    # step 2: only image 1: (k0, down) 0.9 is out (k0 left the pool in both directions), so (k1, down) 0.8;
    # image 1 reaches 0.2 + 0.8 = 1.0 and the search stops with every image explained.
    assert as_tuples(attfind(effect, predicted, target=1)) == [(0, 1, 1.1), (1, 0, 0.8)]
    chosen = attfind(effect, predicted, target=1)
    assert all(a.target == 1 for a in chosen)


def test_attfind_clips_negative_effects_and_stops_at_m():
    effect = effects_on(GREEDY_CASE, n=3, k=3)
    predicted = torch.tensor([0, 0, 1])
    # with a high threshold nobody is explained; (k2, up) has raw mean (-5 + 0.5) / 2 < 0 but clipped 0.25 > 0
    assert as_tuples(attfind(effect, predicted, target=1, threshold=10)) == [(0, 1, 1.1), (1, 0, 0.7), (2, 1, 0.25)]
    assert len(attfind(effect, predicted, target=1, threshold=10, num_attributes=2)) == 2


def test_attfind_stops_without_positive_candidates_or_images():
    effect = -torch.rand(4, 2, 5, 2)
    assert attfind(effect, torch.zeros(4, dtype=torch.long), target=1) == []
    assert attfind(torch.rand(4, 2, 5, 2), torch.ones(4, dtype=torch.long), target=1) == []


def test_attfind_discard_inconsistent():
    # coordinate 0 raises the target logit in both directions (raw means 0.5 and 1.0), coordinate 1 in one
    effect = effects_on({(0, 0, 0): 0.5, (0, 1, 0): 1.0, (0, 1, 1): 0.3, (0, 0, 1): -0.3}, n=1, k=2)
    predicted = torch.tensor([0])
    assert as_tuples(attfind(effect, predicted, 1, threshold=10)) == [(0, 1, 1.0), (1, 1, 0.3)]
    assert as_tuples(attfind(effect, predicted, 1, threshold=10, discard_inconsistent=True)) == [(1, 1, 0.3)]


def test_attfind_bad_inputs():
    with pytest.raises(UserError, match=r"\[N, 2, K, C\]"):
        attfind(torch.zeros(3, 4, 2), torch.zeros(3), 0)
    with pytest.raises(UserError, match="one class per image"):
        attfind(torch.zeros(3, 2, 4, 2), torch.zeros(2), 0)
    with pytest.raises(UserError, match="outside the classifier"):
        attfind(torch.zeros(3, 2, 4, 2), torch.zeros(3), 2)


def test_binary_merge_follows_the_official_rule():
    n, k = 2, 3
    effect = torch.zeros(n, 2, k, 2)
    # score(k, d) = mean effect[:, d, k, 0] + mean effect[:, 1 - d, k, 1]
    effect[:, 1, 0, 0], effect[:, 0, 0, 1] = 0.5, 0.5  # (k0, up): 1.0
    effect[:, 0, 2, 0] = 0.2  # (k2, down): 0.2
    effect[:, 0, 1, 0], effect[:, 1, 1, 1] = 1.0, 1.0  # (k1, down): 2.0, reached by flipping class 1's (k1, up)
    toward_0 = [Attribute(0, 1, 0.9, 0), Attribute(2, 0, 0.3, 0)]
    toward_1 = [Attribute(0, 0, 0.8, 1), Attribute(1, 1, 0.7, 1)]  # k0 is already there: dropped
    merged = merge_binary(effect, toward_0, toward_1)
    assert [(a.coordinate, a.direction) for a in merged] == [(1, 0), (0, 1), (2, 0)]
    assert [round(a.score, 6) for a in merged] == [2.0, 1.0, 0.2]
    assert all(a.target == 0 for a in merged)
    with pytest.raises(UserError, match="two-class"):
        merge_binary(torch.zeros(2, 2, 3, 3), toward_0, toward_1)


def test_find_attributes_multiclass_one_vs_rest_and_json_round_trip(tmp_path):
    layout = StyleLayout(8, channel_base=64, channel_max=4)  # conv_dim 12
    k = layout.conv_dim
    effect = torch.zeros(3, 2, k, 3)
    effect[0, 1, 5, 2] = 3.0  # moves image 0 (class 0) toward class 2
    effect[2, 0, 7, 2] = 9.0  # image 2 is predicted 2 itself: ignored for class 2
    effect[2, 1, 3, 0] = 2.0  # moves image 2 toward class 0
    baseline = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    effects = attfind_module.Effects(effect, baseline, {"shift_size": 1.0})
    found = find_attributes(effects, ["a", "b", "c"], layout, "stylex")
    assert found.merged is None
    assert [(a.coordinate, a.direction) for a in found.per_class[2]] == [(5, 1)]
    assert [(a.coordinate, a.direction) for a in found.per_class[0]] == [(3, 1)]
    assert found.per_class[1] == []
    path = found.save(tmp_path / "attributes" / "stylex.json")
    data = json.loads(path.read_text())
    row = data["per_class"]["c"][0]
    assert (row["layer"], row["channel"]) == layout.locate(5) and row["direction_name"] == "toward max"
    loaded = AttributeSet.load(path)
    assert loaded.per_class == found.per_class and loaded.classes == ["a", "b", "c"]
    assert loaded.toward(2) == found.per_class[2]


def test_binary_attribute_set_derives_both_directions():
    layout = StyleLayout(8, channel_base=64, channel_max=4)
    effect = torch.zeros(2, 2, layout.conv_dim, 2)
    effect[1, 1, 4, 0] = 2.0  # image 1 (class 1) -> class 0 by raising coordinate 4
    effects = attfind_module.Effects(effect, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), {})
    found = find_attributes(effects, ["x", "y"], layout, "stylex")
    assert [(a.coordinate, a.direction) for a in found.toward(0)] == [(4, 1)]
    assert [(a.coordinate, a.direction, a.target) for a in found.toward(1)] == [(4, 0, 1)]


# ---- the effect tensor on a real tiny model ----------------------------------------------------------------------


def test_compute_effects_equals_full_regeneration(tiny):
    model, styles, stats = tiny
    # a batch size that does not divide the layers, so batches mix images and layers end mid-batch
    fast = compute_effects(model, styles, stats, shift_size=1.0, chunk_images=2, max_batch=37, progress=False)
    layout = model.generator.layout
    # the naive loop costs one generator pass per edit: check every layer's first and last channel and a seeded
    # sample of the others (the batched computation above covered all, so batch boundaries still mix layers)
    ends = {k for layer in layout.conv_layers for k in (layer.conv_offset, layer.conv_offset + layer.dim - 1)}
    rest = sorted(set(range(layout.conv_dim)) - ends)
    coordinates = sorted(ends | set(random.Random(0).sample(rest, min(len(rest), 40))))
    slow = reference_effects(model, styles, stats, shift_size=1.0, images=[0, 3], coordinates=coordinates)
    assert fast.effect.shape == (5, 2, layout.conv_dim, 2)
    assert slow.abs().max() > 1e-3, "the tiny model's effects are too small for a meaningful comparison"
    # fp32 batched vs batch-1 convolutions differ in summation order only: ~1e-5 on logits of size ~1
    torch.testing.assert_close(fast.effect[[0, 3]][:, :, coordinates], slow, rtol=1e-3, atol=1e-4)
    baseline = model.classifier(model.generator.synthesize([s.float() for s in styles])[0])
    torch.testing.assert_close(fast.baseline, baseline, rtol=1e-4, atol=1e-5)
    assert fast.effect.dtype == torch.float32 and fast.meta["edit_batch"] == 37


def test_killed_effect_computation_resumes_to_the_same_tensor(tiny, tmp_path, monkeypatch):
    model, styles, stats = tiny
    uninterrupted = compute_effects(model, styles, stats, chunk_images=2, max_batch=64, progress=False)
    out = tmp_path / "effects"
    real_write = attfind_module._ChunkStore.write
    written = []

    def write_then_die(self, chunk, effect, baseline):
        if len(written) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a kill between chunks looks like to the loop
        real_write(self, chunk, effect, baseline)
        written.append(chunk)

    monkeypatch.setattr(attfind_module._ChunkStore, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        compute_effects(model, styles, stats, out_dir=out, chunk_images=2, max_batch=64, progress=False)
    monkeypatch.setattr(attfind_module._ChunkStore, "write", real_write)
    (out / ".chunk-00002.pt.999.tmp").write_bytes(b"half a file")  # a kill during a write leaves only a temp file
    assert sorted(p.name for p in out.glob("chunk-*.pt")) == ["chunk-00000.pt", "chunk-00001.pt"]

    computed = []
    real_chunk = attfind_module._chunk_effects
    monkeypatch.setattr(attfind_module, "_chunk_effects", lambda *a: computed.append(1) or real_chunk(*a))
    resumed = compute_effects(model, styles, stats, out_dir=out, chunk_images=2, max_batch=64, progress=False)
    assert len(computed) == 1, "only the missing chunk is computed again"
    assert torch.equal(resumed.effect, uninterrupted.effect)
    assert torch.equal(resumed.baseline, uninterrupted.baseline)
    with pytest.raises(UserError, match="shift_size"):
        compute_effects(model, styles, stats, shift_size=0.5, out_dir=out, chunk_images=2, progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garble", "wrong-content"])
def test_damaged_effect_chunk_is_named_deleted_and_recomputed(tiny, tmp_path, monkeypatch, caplog, damage):
    model, styles, stats = tiny
    out = tmp_path / "effects"
    first = compute_effects(model, styles, stats, out_dir=out, chunk_images=2, max_batch=64, progress=False)
    damaged = out / "chunk-00001.pt"
    if damage == "truncate":  # a full disk or a killed copy: what gave `PytorchStreamReader failed` before
        damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    elif damage == "garble":
        damaged.write_bytes(b"\0" * 100)
    else:
        torch.save({"effect": torch.zeros(3)}, damaged)

    computed = []
    real_chunk = attfind_module._chunk_effects
    monkeypatch.setattr(attfind_module, "_chunk_effects", lambda *a: computed.append(1) or real_chunk(*a))
    with caplog.at_level("WARNING", logger="stylex.attfind"):
        again = compute_effects(model, styles, stats, out_dir=out, chunk_images=2, max_batch=64, progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "computing it again" in warnings[0]
    assert len(computed) == 1, "only the damaged chunk is computed again"
    assert torch.equal(again.effect, first.effect) and torch.equal(again.baseline, first.baseline)
    reread = torch.load(damaged, weights_only=True)  # the recomputed chunk replaced the damaged file
    assert torch.equal(reread["effect"], first.effect[2:4])

    (out / "meta.json").write_text('{"fingerprint": ')
    with pytest.raises(UserError, match=r"meta\.json is damaged.*--recompute"):
        compute_effects(model, styles, stats, out_dir=out, chunk_images=2, progress=False)


def test_style_stats_round_trip(tiny, tmp_path):
    model, styles, stats = tiny
    conv = model.generator.layout.conv_flatten(styles)
    assert torch.equal(stats.minimum, conv.min(0).values) and torch.equal(stats.maximum, conv.max(0).values)
    assert stats.num_images == 5 and stats.conv_dim == model.generator.layout.conv_dim
    save_stats(tmp_path, "stylex", stats)
    save_stats(tmp_path, "stylex-nocst", stats)
    loaded = load_stats(tmp_path, "stylex")
    assert torch.equal(loaded.std, stats.std) and loaded.source == {"test": True}
    assert load_stats(tmp_path / "nowhere", "stylex") is None
    (tmp_path / "stats.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="delete it"):
        load_stats(tmp_path, "stylex")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_attfind_cli_and_two_process_sharding_agree(tiny_run, tmp_path):
    from stylex.cli import main

    single, sharded = tmp_path / "single", tmp_path / "sharded"
    for target in (single, sharded):
        target.mkdir()
        for name in ("config.json", "classifier.pt", "checkpoints"):
            source = tiny_run / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, target / name)
    assert main(["attfind", "--run", str(single)]) == 0
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [torchrun, "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
         "-m", "stylex", "attfind", "--run-dir", str(sharded)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for run in (single, sharded):
        assert sorted(p.name for p in (run / "effects" / "stylex").glob("chunk-*.pt")) == [
            "chunk-00000.pt", "chunk-00001.pt", "chunk-00002.pt"]
        figures = sorted(p.name for p in (run / "attfind" / "stylex").iterdir())
        assert "attribute-01.png" in figures and "attribute-01-sweep.gif" in figures and "summary.json" in figures
    a = json.loads((single / "attributes" / "stylex.json").read_text())
    b = json.loads((sharded / "attributes" / "stylex.json").read_text())
    # same chunks, computed by two processes with one thread each: equal up to fp32 summation order
    for name in ("chunk-00000.pt", "chunk-00002.pt"):
        one, two = (torch.load(run / "effects" / "stylex" / name, weights_only=True) for run in (single, sharded))
        torch.testing.assert_close(one["effect"], two["effect"], rtol=1e-3, atol=1e-4)
    key = ("coordinate", "direction", "layer", "channel")
    assert [[r[k] for k in key] for r in a["merged"]] == [[r[k] for k in key] for r in b["merged"]]
    assert [r["score"] for r in a["merged"]] == pytest.approx([r["score"] for r in b["merged"]], abs=1e-4)
    assert a["merged"], "the tiny run should find at least one attribute"
    assert {"layer", "channel", "direction", "coordinate", "mean_effect"} <= set(a["merged"][0])


def test_attfind_cli_errors(tmp_path, capsys):
    from stylex.cli import main

    assert main(["attfind", "--run", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_out_of_memory_retries_the_chunk_with_smaller_batches(tiny, monkeypatch):
    model, styles, stats = tiny
    expected = compute_effects(model, styles, stats, chunk_images=5, max_batch=16, progress=False)
    real_chunk = attfind_module._chunk_effects
    batches = []

    def limited_memory(model, styles, stats, shift_size, dtype, batch_size, bar, coordinates):
        batches.append(batch_size)
        if batch_size > 20:  # what a GPU that is fuller than the probe measured does
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated: no GPU on the test machine)")
        return real_chunk(model, styles, stats, shift_size, dtype, batch_size, bar, coordinates)

    monkeypatch.setattr(attfind_module, "_chunk_effects", limited_memory)
    effects = compute_effects(model, styles, stats, chunk_images=5, max_batch=64, progress=False)
    assert batches == [64, 32, 16] and effects.meta["edit_batch"] == 16
    torch.testing.assert_close(effects.effect, expected.effect, rtol=0, atol=0)
