"""Simulated participants end to end through the study database, planted responses for the analysis, power, and
the analysis notebook. A tiny synthetic study built in tmp_path: attribute i moves a coloured square in direction i,
so the references and the correct option share the change. No torch."""

import ast
import hashlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studies import analysis, db, simulate

DIRECTIONS = {1: (1, 0), 2: (-1, 0), 3: (0, 1), 4: (0, -1)}  # right, left, down, up
COLORS = {"stylex": (220, 30, 30), "wu": (30, 220, 30)}
WORDS = {1: "right", 2: "left", 3: "bottom", 4: "top"}
SIZE, SIDE, SHIFT = 32, 6, 8
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "study_analysis.ipynb"


def _gif(method: str, attr: int, image: int, static: bool = False) -> bytes:
    """Ping-pong sweep: the square moves SHIFT px in the attribute's direction and back; backgrounds differ by image."""
    dx, dy = DIRECTIONS[attr]
    steps = [0, 0] if static else [0, 2, 4, 6, 8, 6, 4, 2]
    frames = []
    for s in steps:
        arr = np.full((SIZE, SIZE, 3), 40 + 15 * image, np.uint8)
        arr[2 + 3 * image, 2:5] = 255  # a static mark that differs per image
        x0, y0 = 13 + dx * s, 13 + dy * s
        arr[y0:y0 + SIDE, x0:x0 + SIDE] = COLORS[method]
        frames.append(Image.fromarray(arr))
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buf.getvalue()


def _build_study(folder: Path, study_id: str):
    """Register assets and items like build_materials does: (items, answer_key, loader, engine)."""
    files: dict[str, bytes] = {}

    def asset(method, attr, image, static=False):
        data = _gif(method, attr, image, static)
        asset_id = hashlib.sha256(data).hexdigest()[:16]
        files[asset_id] = data
        return asset_id

    items, key = [], {}
    for method in COLORS:
        for attr in DIRECTIONS:
            j = attr % len(DIRECTIONS) + 1
            refs = [asset(method, attr, 0), asset(method, attr, 1)]
            correct, distractor = asset(method, attr, 2), asset(method, j, 3)
            letter = "A" if attr % 2 else "B"
            options = [correct, distractor] if letter == "A" else [distractor, correct]
            item_id = f"{method}-{attr}"
            items.append({"item_id": item_id, "part": 1, "kind": "main", "method": method, "domain": "toy",
                          "attr_i": attr, "attr_j": j, "assets": refs + options})
            key[item_id] = letter
            items.append({"item_id": f"{item_id}-d", "part": 2, "kind": "describe", "method": method, "domain": "toy",
                          "attr_i": attr, "attr_j": None, "assets": [asset(method, attr, k) for k in range(4)]})
    for n, letter in enumerate("AB"):
        pair = [asset("stylex", 1, 0), asset("stylex", 1, 1)]
        static = asset("stylex", 1, 2, static=True)
        items.append({"item_id": f"att{n}", "part": 1, "kind": "attention", "method": "stylex", "domain": "toy",
                      "attr_i": 1, "attr_j": None,
                      "assets": [*pair, *([pair[0], static] if letter == "A" else [static, pair[0]])]})
        key[f"att{n}"] = letter
    folder.mkdir(parents=True, exist_ok=True)
    for asset_id, data in files.items():
        (folder / f"{asset_id}.gif").write_bytes(data)
    assets = [{"asset_id": a, "sha256": hashlib.sha256(d).hexdigest(), "relpath": f"{a}.gif"} for a, d in files.items()]
    engine = db.get_engine(f"sqlite:///{folder / 'study.sqlite'}")
    db.create_schema(engine)
    db.add_study(engine, study_id, "toy", "0" * 64, assets)
    return items, key, (lambda asset_id: (folder / f"{asset_id}.gif").read_bytes()), engine


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    yield tmp_path_factory.mktemp("simstudy")
    db.dispose_engines()


def _part1_accuracy(engine, noise: float, load, items, key, seed: int):
    ids = simulate.run_participants(engine, "toy", items, key, "coherence", 6,
                                    lambda s: simulate.Observer(load, noise=noise, seed=s), seed=seed)
    frames = db.export_frames(engine)
    return ids, frames


@pytest.mark.filterwarnings("ignore:Perfect separation")  # noise 0: every answer right, GEE separates
def test_noise_free_observer_is_accurate_and_every_trial_answered_once(study):
    items, key, load, engine = _build_study(study / "clean", "toy")
    ids, frames = _part1_accuracy(engine, 0.0, load, items, key, seed=1)
    assert len(ids) == 6
    responses, trials = frames["responses"], frames["trials"]
    assert len(responses) == len(trials) == 6 * (8 + 2 + 1)  # 8 main, 2 attention, 1 practice
    assert responses["trial_id"].is_unique and trials["answered"].all()
    main = responses[responses["kind"] == "main"]
    assert main["correct"].astype(float).mean() > 0.8
    assert responses.loc[responses["kind"] == "attention", "correct"].all()  # the static option never matches
    assert set(frames["participants"]["status"]) == {"completed"}
    assert frames["participants"]["external_pid"].str.match(r"sim-1-\d{4}$").all()
    # re-running the same seed resumes the same participants: no new trials, no double answers
    assert simulate.run_participants(engine, "toy", items, key, "coherence", 6,
                                     lambda s: simulate.Observer(load, seed=s), seed=1) == ids
    assert len(db.export_frames(engine)["responses"]) == len(responses)
    result = analysis.analyze(responses)
    assert {r["method"] for r in result["accuracy"]} == {"stylex", "wu"}


def test_very_noisy_observer_is_near_chance(study):
    items, key, load, engine = _build_study(study / "noisy", "toy")
    _, frames = _part1_accuracy(engine, 100.0, load, items, key, seed=2)
    main = frames["responses"][frames["responses"]["kind"] == "main"]
    assert len(main) == 48
    assert 0.2 <= main["correct"].astype(float).mean() <= 0.8


def test_part2_descriptions_name_the_change(study):
    items, _, load, engine = _build_study(study / "describe", "toy")
    simulate.run_participants(engine, "toy", items, None, "description", 2,
                              lambda s: simulate.Observer(load, seed=s), seed=3)
    responses = db.export_frames(engine)["responses"]
    assert len(responses) == 2 * 8 and responses["correct"].isna().all()
    words = analysis.word_agreement(responses)
    assert words["shared_by_all"].all()
    for row in words.itertuples():
        color = "red" if row.method == "stylex" else "green"
        assert set(row.shared_words.split()) == {WORDS[row.attribute], color}


def test_observer_signature_and_still_gif():
    still = simulate.change_signature(_gif("wu", 1, 0, static=True))
    moving = simulate.change_signature(_gif("wu", 1, 0))
    assert not still.any() and moving.any() and moving.shape == (SIZE, SIZE, 3)
    load = {"r1": _gif("wu", 1, 0), "r2": _gif("wu", 1, 1), "a": _gif("wu", 2, 2), "b": _gif("wu", 1, 3)}.__getitem__
    obs = simulate.Observer(load, noise=0.0)
    sim_a, sim_b = obs.similarities(["r1", "r2", "a", "b"])
    assert sim_b > 0.9 > sim_a
    assert obs.choose(["r1", "r2", "a", "b"]) == "B"


def test_planted_responses_recovered_within_wilson_intervals():
    planted = {"stylex": 0.9, "wu": 0.6}
    responses = simulate.planted_responses(planted, n_participants=30, trials_per_method=12, attributes=6, seed=1)
    assert list(responses.columns) == simulate.PLANTED_COLUMNS
    assert len(responses) == 30 * (2 * 12 + 2 + 1)
    table = analysis.accuracy_table(responses)
    for row in table.itertuples():
        assert row.ci_low <= planted[row.method] <= row.ci_high, row
        assert row.n_attributes == 6 and row.n_participants == 30
    comp = analysis.compare_methods(responses, n_boot=200)
    term = comp["gee"]["terms"]["method:stylex"]
    assert term["odds_ratio"] > 1 and term["p_value"] < 0.01


def test_planted_attention_failures_are_excluded():
    responses = simulate.planted_responses({"a": 0.8, "b": 0.7}, 40, 4, attention_fail=0.5, seed=4)
    kept, report = analysis.exclusions(responses)
    failed = report["n_attention_correct"] == 0
    assert 5 < failed.sum() < 35 and set(report.loc[failed, "participant"]).isdisjoint(kept)


def test_power_grows_with_participants():
    table = simulate.power(0.85, 0.6, participants_grid=(3, 12, 40), trials_per_method=6, n_sims=8, seed=0)
    assert list(table["n_participants"]) == [3, 12, 40]
    power = table["power"].to_numpy()
    assert power[-1] >= power[0] and power[-1] >= 0.75
    assert table["mean_ci_width"].is_monotonic_decreasing
    gee = simulate.power(0.85, 0.6, participants_grid=(20,), trials_per_method=6, n_sims=3, seed=1, test="gee")
    assert gee["test"].iloc[0] == "gee" and 0.0 <= gee["power"].iloc[0] <= 1.0


def test_load_responses_csv_round_trip(tmp_path):
    responses = simulate.planted_responses({"stylex": 0.9, "wu": 0.6}, 5, 4, seed=2)
    responses.to_csv(tmp_path / "r.csv", index=False)
    back = simulate.load_responses(tmp_path / "r.csv")
    assert str(back["correct"].dtype) == "boolean" and back["correct"].tolist() == responses["correct"].tolist()
    assert analysis.accuracy_table(back).equals(analysis.accuracy_table(responses))


# ------------------------------------------------------------------------------------------------------- notebook


def _notebook() -> dict:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    if importlib.util.find_spec("nbformat") is not None:
        import nbformat

        nbformat.validate(nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4))
    return nb


def test_notebook_is_valid_and_only_calls_the_package():
    nb = _notebook()
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    assert nb["cells"][0]["cell_type"] == "markdown"
    ids = [cell["id"] for cell in nb["cells"]]
    assert len(set(ids)) == len(ids)
    allowed = {"studies", "pandas", "IPython"}  # IPython: the kernel's own display helpers, nothing else
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        if cell["cell_type"] != "code":
            continue
        assert cell["outputs"] == [] and cell["execution_count"] is None
        tree = ast.parse("".join(cell["source"]))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                # no logic of its own: no function/class definitions, loops or branches
                assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.For | ast.While | ast.If), cell["id"]
                continue
            assert roots <= allowed | set(sys.stdlib_module_names), roots
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and "RESPONSES_CSV = None" in "".join(params[0]["source"])


def test_notebook_runs(tmp_path, monkeypatch):
    """Executes the notebook in a real Jupyter kernel (nbclient + ipykernel, dev dependencies)."""
    import nbclient
    import nbformat

    monkeypatch.chdir(tmp_path)  # OUT_DIR is relative: the report lands in tmp_path
    node = nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4)
    nbclient.NotebookClient(node, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in node.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    out = tmp_path / "reports" / "study_analysis"
    assert (out / "analysis.md").is_file() and (out / "accuracy.png").is_file() and (out / "table2.tex").is_file()
