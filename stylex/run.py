"""The run directory (DESIGN section 10): the one place that knows where each artifact of a run lives.

    runs/<name>/config.json                  the resolved config the run was made with
                classifier.pt, oracle.pt     the explained classifier and the independent judge
                checkpoints/<variant>.pt     StylEx ('stylex') and StylEx w/o CST ('stylex-nocst')
                stats.pt                     style statistics, one entry per variant
                effects/<variant>/           AttFind's effect tensor in resumable chunks
                attributes/<method>.json     every method's attribute set
                attfind/<method>/            attribute panels, GIFs and their summary.json
                explanations/<image>-<strategy>/
                faithfulness/                held-out faithfulness of both generators
                benchmark/                   cached benchmark stages, factor probes, FID references
                report/                      the benchmark report
                samples/, logs/, tensorboard/, <variant>_metrics.json   training outputs

A shipped models folder (models/demo) has the same layout for the files it holds, so `RunDir` reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VARIANTS = ("stylex", "stylex-nocst")


def variant_name(cst: bool) -> str:
    """'stylex' for classifier-specific training, 'stylex-nocst' for the paper's w/o-CST baseline."""
    return "stylex" if cst else "stylex-nocst"


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def __str__(self) -> str:
        return str(self.root)

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def classifier(self) -> Path:
        return self.root / "classifier.pt"

    @property
    def oracle(self) -> Path:
        return self.root / "oracle.pt"

    def classifier_file(self, oracle: bool = False) -> Path:
        return self.oracle if oracle else self.classifier

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, variant: str) -> Path:
        return self.checkpoints / f"{variant}.pt"

    @property
    def stats(self) -> Path:
        return self.root / "stats.pt"

    def effects(self, variant: str) -> Path:
        return self.root / "effects" / variant

    def attributes(self, method: str) -> Path:
        return self.root / "attributes" / f"{method}.json"

    def figures(self, method: str) -> Path:
        return self.root / "attfind" / method

    def explanation(self, image_stem: str, strategy: str) -> Path:
        return self.root / "explanations" / f"{image_stem}-{strategy}"

    @property
    def faithfulness(self) -> Path:
        return self.root / "faithfulness"

    @property
    def benchmark(self) -> Path:
        return self.root / "benchmark"

    @property
    def probes(self) -> Path:
        return self.benchmark / "probes.pt"

    @property
    def fid_reference(self) -> Path:
        return self.benchmark / "fid-reference"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def samples(self, variant: str) -> Path:
        return self.root / "samples" / variant

    def tensorboard(self, variant: str) -> Path:
        return self.root / "tensorboard" / variant

    def training_log(self, variant: str) -> Path:
        return self.root / "logs" / f"{variant}.jsonl"

    def evaluation_log(self, variant: str) -> Path:
        return self.root / "logs" / f"{variant}-eval.jsonl"

    def training_metrics(self, variant: str) -> Path:
        return self.root / f"{variant}_metrics.json"

    def data_preview(self, split: str) -> Path:
        return self.root / f"data_preview_{split}.png"

    @property
    def starting_files(self) -> tuple[Path, ...]:
        """The trained models a benchmark can start from (what models/<preset> ships)."""
        return (self.classifier, self.oracle, *(self.checkpoint(v) for v in VARIANTS), self.probes)
