"""`stylex study export | backup | analyze` on a database filled by simulated participants through the same layer
the app uses."""

import json
import sqlite3

import pandas as pd
from test_study_app import STUDY, synthetic_materials

from studies import db, simulate
from studies.manifest import asset_paths, load_study
from stylex.cli import main


def test_export_backup_and_analyze_from_the_command_line(tmp_path, capsys):
    folder, key, _ = synthetic_materials(tmp_path / "materials")
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    engine = db.get_engine(url)
    load_study(engine, folder, key, study_id=STUDY)
    items, answer_key = db.study_items(engine, STUDY)
    paths = asset_paths(folder)

    def load(asset_id: str) -> bytes:
        return paths[asset_id].read_bytes()

    simulate.run_participants(engine, STUDY, items, answer_key, "coherence", 4,
                              lambda seed: simulate.Observer(load, noise=0.0, seed=seed), load, seed=1)
    simulate.run_participants(engine, STUDY, items, None, "description", 3,
                              lambda seed: simulate.Observer(load, noise=0.0, seed=seed), load, seed=2)

    assert main(["study", "export", "--db", url, "--out", str(tmp_path / "export")]) == 0
    responses = pd.read_csv(tmp_path / "export" / "responses.csv")
    assert len(responses) == 4 * 6 + 3 * 4  # every planned trial answered once (Part 1: practice+4+attention)
    assert main(["study", "backup", "--db", url, "--out", str(tmp_path / "backup.db")]) == 0
    with sqlite3.connect(tmp_path / "backup.db") as copy:
        assert copy.execute("SELECT count(*) FROM response").fetchone()[0] == len(responses)
    assert main(["study", "analyze", "--db", url, "--out", str(tmp_path / "analysis")]) == 0
    result = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert {row["method"] for row in result["accuracy"]} == {"methodalpha", "methodbeta"}
    assert (tmp_path / "analysis" / "table2.tex").is_file()
    db.dispose_engines()
    assert "wrote" in capsys.readouterr().out
