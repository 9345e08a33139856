"""What the sampler tests run through the CLI: a GM + argmax search, and the same search killed and resumed."""

import json

from gmgraph.cli import main


def gm_argmax(sampler: str, steps_per_epoch: int = 1) -> list[str]:
    """``gmgraph search`` flags of a tiny GM + argmax run of ``sampler``: 2 epochs split at 1, no final training,
    GM scoring 2 of NB201's 6 labels (a later ``--labels``, as in :data:`MOBILENET`, replaces them)."""
    return ["--data", "synthetic", "--width", "4", "--cells", "1", "--epochs", "2", "--split-at", "1",
            "--rounds", "1", "--final-epochs", "0", "--sampler", sampler, "--method", "gm", "--search", "argmax",
            "--steps-per-epoch", str(steps_per_epoch), "--bn-batches", "1", "--batch-size", "16",
            "--export", "false", "--html", "false", "--quiet", *NB201_LABELS]


NB201_LABELS = ["--labels", "1<-0,3<-2"]
"""GM scores 2 of NB201's 6 labels: the split, the resume and the argmax claims need a split, not all six scored."""


MOBILENET = ["--space", "mobilenet", "--batch-size", "4", "--labels", "block2"]
"""``--space mobilenet`` with GM scoring 1 of its 21 labels: the split it needs (each label scored costs a forward
and backward pass of the supernet per op, and choosing among labels is checked on NB201 above)."""


def assert_a_gm_argmax_run(report: dict, sampler: str) -> None:
    """``report`` is a finished ``--method gm --search argmax`` run of ``sampler``: one split, argmax per leaf."""
    assert report["settings"]["train"]["sampler"] == sampler and len(report["leaves"]) == 2
    assert report["search"]["evaluations"] <= 2
    assert any(leaf["best_arch"] == report["arch"] for leaf in report["leaves"])


def search(flags: list[str], out) -> dict:
    """``gmgraph search FLAGS --out OUT``; its report."""
    assert main(["search", *flags, "--out", str(out)]) == 0
    return json.loads((out / "report.json").read_text())


def killed_and_resumed(flags: list[str], tmp_path, monkeypatch) -> tuple[dict, dict]:
    """The reports of a straight run and of the same run killed in a child's first epoch, then ``--resume``d."""
    import gmgraph.train.loop as loop

    straight = search(flags, tmp_path / "straight")
    real, calls = loop.SupernetTrainer.train_epoch, []

    def killed_at_the_second_epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # after the root's epoch and the split: a child's first epoch
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(loop.SupernetTrainer, "train_epoch", killed_at_the_second_epoch)
    assert main(["search", *flags, "--out", str(tmp_path / "run")]) == 130
    monkeypatch.setattr(loop.SupernetTrainer, "train_epoch", real)
    assert main(["search", "--out", str(tmp_path / "run"), "--resume", "--quiet"]) == 0
    resumed = json.loads((tmp_path / "run" / "report.json").read_text())
    assert resumed["arch"] == straight["arch"] and resumed["split_tree"] == straight["split_tree"]
    for leaves in (straight["leaves"], resumed["leaves"]):
        for leaf in leaves:
            for epoch in leaf["history"]:
                del epoch["seconds"]  # the one thing a resume may change
    assert resumed["leaves"] == straight["leaves"]
    return straight, resumed
