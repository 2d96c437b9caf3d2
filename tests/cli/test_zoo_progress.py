"""The zoo trainers' progress bar: figures from each step event, notes, a resumed start."""

from __future__ import annotations

from cli.zoo.options import progress_bar

FIGURES = {"loss": ("loss", ".3f"), "top1": ("top1_eval", ".2f")}


def test_the_bar_shows_the_figures_each_event_has(capsys):
    with progress_bar(4, "judge", FIGURES) as show:
        show({"step": 1, "loss": 2.0})
        show({"step": 2, "loss": 1.5, "top1_eval": 0.25})
    err = capsys.readouterr().err
    assert "loss=2.000" in err and "loss=1.500, top1=0.25" in err
    assert "top1=" not in err.split("loss=1.500")[0]  # the first event had no top-1


def test_a_resumed_run_starts_at_its_step_and_notes_are_lines(capsys):
    def note(event: dict) -> str | None:
        return event.get("note")

    with progress_bar(10, "vq", FIGURES, note) as show:
        show({"step": 7, "loss": 0.5})
        show({"note": "eval done"})
    captured = capsys.readouterr()
    assert "7/10" in captured.err and "eval done" in captured.out
