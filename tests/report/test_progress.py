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
