"""The progress lines' format: a trial's tag, epoch k/N with its figures and ETA, the scheduler relay kept."""

from __future__ import annotations

import re

from searchlab.progress import LINE_PATTERN, EpochLines, TrialTag, parse_trial_name


def test_a_trial_is_tagged_by_its_number_and_id_as_tunes_folder_names_it() -> None:
    tag = parse_trial_name("trial-12-a1b2c3d4", "a1b2c3d4")
    assert (str(tag), tag.name, tag.epochs) == ("[trial 12 a1b2c3d4]", "trial-12-a1b2c3d4", True)
    assert re.match(LINE_PATTERN, str(tag))
    assert parse_trial_name("someone-else", "x", epochs=False) == TrialTag(0, "x", epochs=False)


def test_epoch_lines_show_k_of_n_the_figures_and_an_eta_then_relay(capsys) -> None:
    relayed = []
    hook = EpochLines("[trial 3 ab12]", "stage2", then=lambda *args: relayed.append(args))
    hook(1, {"epochs": 3, "loss/total": 0.5, "loss/ce": 0.4, "tau": 2.0}, False)
    hook(2, {"epochs": 3, "loss/ce": 0.25}, False)  # no total: the first loss term
    hook(3, {"epochs": 3, "loss/total": float("nan"), "accuracy": 0.8125, "gflops": 0.1207}, True)
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\[trial 3 ab12\] stage2 epoch 1/3 loss 0\.500 eta \d+ s", lines[0])
    assert re.fullmatch(r"\[trial 3 ab12\] stage2 epoch 2/3 loss 0\.250 eta \d+ s", lines[1])
    assert re.fullmatch(r"\[trial 3 ab12\] stage2 epoch 3/3 acc 0\.812 gflops 0\.121 done in \d+ s", lines[2])
    assert [(epoch, final, "epochs" in metrics) for epoch, metrics, final in relayed] == [
        (1, False, False), (2, False, False), (3, True, False)]  # the relay hears the stage's own metrics


def test_cache_events_read_as_sentences(capsys) -> None:
    tag = TrialTag(0, "ab12")
    for event in ("hit", "wait", "build"):
        tag.cache_event("stage1", "9f3e", event)
    tag.cache_event("stage1", "9f3e", "built", 12.4)
    assert capsys.readouterr().out.splitlines() == [
        "[trial 0 ab12] stage1: cache hit (key 9f3e)",
        "[trial 0 ab12] stage1: cache busy, waiting for the trial that builds it (key 9f3e)",
        "[trial 0 ab12] stage1: cache miss, building (key 9f3e)",
        "[trial 0 ab12] stage1: built in 12 s, cached (key 9f3e)"]
