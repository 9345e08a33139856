"""The whole run's ETA: planned training steps, re-planned at splits, and the time left at the rate so far."""

import io
import re

import torch

from gmgraph import data
from gmgraph.config import FewShotConfig, TrainConfig
from gmgraph.graph import trace
from gmgraph.progress import JobEstimate, Progress, estimating
from gmgraph.spaces import nb201
from gmgraph.train.fewshot import run_fewshot


class Recorded(JobEstimate):
    """A job estimate on a fake clock (``now``, set by the test) that keeps every plan it was given."""

    def __init__(self):
        self.now = 0.0
        super().__init__(clock=lambda: self.now)
        self.plans = []

    def plan(self, part, steps):
        self.plans.append((part, steps))
        super().plan(part, steps)


def test_a_few_shot_run_plans_exactly_the_steps_it_trains():
    torch.manual_seed(0)
    gm = trace(nb201.supernet(C=4, N=1, num_classes=10, in_channels=3))
    loaders = data.load("synthetic", batch_size=16, seed=0)
    job = Recorded()
    with estimating(job):
        run_fewshot(gm, loaders, FewShotConfig(method="gm", split_at=(1, 2), rounds=1, labels=("1<-0", "3<-2")),
                    TrainConfig(epochs=3, steps_per_epoch=2), quiet=True)
    # 1 supernet x 3 epochs x 2 steps; then 2 leaves x 2 epochs; then 4 leaves x 1 epoch.
    assert job.plans == [("supernets", 6.0), ("supernets", 8.0), ("supernets", 8.0)]
    assert job.remaining() == 0 and job.done == 2 + 4 + 8 - 1  # the first step starts the clock


def test_the_eta_is_the_steps_left_at_the_rate_so_far_and_every_line_shows_it():
    job = Recorded()
    job.plan("supernets", 10)
    job.plan("final", 5)
    out = io.StringIO()
    with estimating(job):
        bar = Progress("epoch 1/2", total=5, stream=out, job_steps=1)
        for second in range(5):  # the first step ends at 0 s, the fifth at 4 s: 1 s a step
            job.now = float(second)
            bar.update()
        bar.close()
        evaluations = Progress("search", total=2, stream=out, job_steps=0.5)  # an evaluation: half a step
        evaluations.update()
    assert job.remaining() == 15 - 5 - 0.5
    line = out.getvalue().splitlines()[0]
    assert line.endswith("run ETA 10s"), line  # 10 steps left x 1 s a step
    outside = io.StringIO()
    Progress("alone", total=1, stream=outside).close()
    assert "ETA" not in outside.getvalue()  # no job, no estimate


def test_the_shared_search_printed_an_eta_on_every_epoch_line(finished_search):
    epochs = [line for line in finished_search.stderr.splitlines() if re.search(r"epoch \d+/\d+ ", line)]
    assert len(epochs) == 7 + 1  # 7 supernet-epochs and the final epoch
    assert all(re.search(r"run ETA \d+(m\d\ds)?s?$", line) for line in epochs), epochs
