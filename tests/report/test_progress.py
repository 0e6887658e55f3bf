"""The training bar's total under a time budget: where the budget will end the run."""

from mlmkit.report.progress import budgeted_total


def test_a_time_budget_gives_the_bar_a_total_at_the_measured_rate():
    # 10 steps in 5 s, 60 s left: 120 more steps at that rate
    assert budgeted_total(10, 10, 5.0, 60.0, None) == 130
    assert budgeted_total(10, 10, 5.0, 60.0, 50) == 50  # a step limit that comes first wins
    assert budgeted_total(110, 10, 5.0, 60.0, None) == 230  # resumed at step 100: rate from this run's steps
    assert budgeted_total(10, 10, 5.0, -3.0, None) == 10  # over budget: ends here
    assert budgeted_total(0, 0, 0.0, 60.0, None) is None  # no rate yet, no limit: no total
    assert budgeted_total(0, 0, 0.0, 60.0, 40) == 40


def test_the_projection_pays_for_the_evaluations_to_come():
    # 0.5 s a step, 300 s left, an evaluation of 20 s every 100 steps: 100 steps + evaluation
    # cost 70 s, so 4 of them (280 s) and 20 s = 40 steps more: step 440
    assert budgeted_total(1, 1, 0.5, 299.5, None, eval_every=100, eval_seconds=20.0) == 440
    # at step 100 its own evaluation is still to come (the loop evaluates after the step)
    assert budgeted_total(100, 100, 50.0, 250.0, None, eval_every=100, eval_seconds=20.0) == 440
    # the last evaluation is never cut short: the run ends at it, not after it
    assert budgeted_total(150, 150, 75.0, 30.0, None, eval_every=100, eval_seconds=20.0) == 200
    assert budgeted_total(150, 150, 75.0, 20.0, None, eval_every=100, eval_seconds=20.0) == 190
    assert budgeted_total(1, 1, 0.5, 299.5, 300, eval_every=100, eval_seconds=20.0) == 300


class _Clock:
    """A fake `time.perf_counter`: time passes only when the toy task says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _toy_task(clock: _Clock, step_s: float, eval_s: float):
    import torch

    from mlmkit.engine.task import LossOutput, TaskBase

    class Toy(TaskBase):
        """A linear model on a constant batch; a training forward takes `step_s` on the clock,
        an evaluation (one batch) `eval_s`."""

        def __init__(self):
            self.model = torch.nn.Linear(4, 1)

        def num_batches(self, epoch):
            return None  # an endless stream: only the time budget ends the run

        def train_batches(self, epoch, start=0, stride=1):
            while True:
                yield {"x": torch.ones(2, 4), "y": torch.zeros(2, 1)}

        def eval_batches(self):
            yield {"x": torch.ones(2, 4), "y": torch.zeros(2, 1)}

        def counts(self, batch):
            return 2, 2

        def forward(self, model, batch):
            clock.now += step_s if model.training else eval_s
            err = ((model(batch["x"]) - batch["y"]) ** 2).sum()
            return LossOutput(loss=err / 2, n_targets=2, loss_sum=err.detach(), n_correct=0, n_tokens=2)

        def save_pretrained(self, model, path):
            path.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path / "weights.pt")

        def describe(self):
            return {}

    return Toy()


def test_the_bar_total_stays_on_the_true_end_across_evaluations_and_checkpoints(tmp_path, monkeypatch):
    """A 5-minute budget on a fake clock: 0.5 s a training step, an evaluation of 20 s every 100
    steps (40 steps' worth), a checkpoint every 150 steps. From the first step on, the bar's total
    stays within 3% of the step the run really ends at. (Timed on wall clock since the last
    checkpoint, evaluations included, the total swung from 600 to over 1,000.)"""
    import types

    from mlmkit.engine import loop
    from mlmkit.engine.config import OptimConfig, TrainConfig

    clock = _Clock()
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=clock))
    totals = []

    class Bar:  # records the total the bar shows after each step
        def __init__(self, total=None, initial=0, **kwargs):
            self.total, self.n = total, initial

        def update(self, k):
            self.n += k
            totals.append((self.n, self.total))

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(loop, "progress_bar", Bar)
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), max_minutes=5, eval_every=100, save_every=150,
                      log_every=50, keep_checkpoints=1, progress=False, show_samples=0)
    summary = loop.train(_toy_task(clock, 0.5, 20.0), cfg, OptimConfig(lr=1e-3), log=lambda s: None)
    end = summary["step"]
    assert 400 <= end <= 450  # 300 s = 4 x (100 steps + an evaluation) + 40 steps
    off = [(n, total) for n, total in totals if abs(total - end) > 0.03 * end]
    worst = max(off, key=lambda o: abs(o[1] - end), default=None)
    assert not off, f"the run ended at step {end}; the bar showed (step, total): {off[:3]} ... worst {worst}"
