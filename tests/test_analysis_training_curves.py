"""The training curves drawn live in 02_train: how often a redraw happens (each one holds the training up)."""

from dictsr_core.analysis.figures.training import LiveTrainingPlot, training_curves


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _record(step):
    return {"step": step, "loss": 0.1, "l1_hr": 0.05, "lr": 5e-4, "activated": 900}


def test_the_live_plot_redraws_at_most_once_per_interval():
    clock = FakeClock()
    plot = LiveTrainingPlot(min_interval_s=10.0, clock=clock)
    drawn = []
    for second in range(35):  # one log step a second
        clock.now = float(second)
        plot.records.append(_record(25 * second))
        if plot.due():
            drawn.append(second)
    assert drawn == [0, 10, 20, 30]
    assert len(plot.records) == 35  # every record kept for the next redraw and the final figure


def test_every_and_the_interval_both_hold_back_a_redraw():
    clock = FakeClock()
    plot = LiveTrainingPlot(every=4, min_interval_s=0.0, clock=clock)
    drawn = []
    for index in range(10):
        clock.now = float(index)
        plot.records.append(_record(index))
        if plot.due():
            drawn.append(index)
    assert drawn == [0, 4, 8]


def test_outside_a_notebook_the_live_plot_only_collects_and_the_curves_draw_at_the_end():
    plot = LiveTrainingPlot(min_interval_s=0.0)
    for step in range(3):
        plot(_record(step))  # plain Python: no IPython display to draw into, and no error
    assert plot._handle is None and [r["step"] for r in plot.records] == [0, 1, 2]
    figure = training_curves(plot.records, "run", entries=1024)
    assert len(figure.axes) == 3
