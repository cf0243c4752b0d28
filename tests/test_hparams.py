"""The hyper-parameter study: its sizes and search space, a search that never sees the test set, pruning through fit's
on_epoch hook, the study's record, and prose that claims a win only where McNemar's test does."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

from dnic_utils import hparams, train
from dnic_utils.config import PROFILES, RunConfig, make_config, same_recipe
from dnic_utils.data import BatchLoader, load_splits
from dnic_utils.hparams import StudySizes
from dnic_utils.records import encode_predictions, make_record

TINY = StudySizes(trials=4, train_size=64, epochs=2, val_size=64)


# --------------------------------------------------------------------------------------------------------------
# Sizes and search space


def test_the_sizes_table_has_every_profile_with_room_for_the_pruner() -> None:
    assert set(hparams.SIZES) == set(PROFILES)
    for name, sizes in hparams.SIZES.items():
        assert sizes.epochs >= 2 and sizes.trials > hparams.PRUNER_STARTUP >= 1, name  # a value per epoch to prune on, and trials to prune
        assert sizes.val_size >= 1 and sizes.train_size >= 2 * min(hparams.BATCH_SIZES), name
    assert hparams.SIZES["smoke"].trials <= 3 and hparams.SIZES["smoke"].train_size <= PROFILES["smoke"].train_size


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("arch", ["fastnet", "minigooglenet"])
def test_the_default_recipe_lies_inside_the_search_space(profile: str, arch: str) -> None:
    sizes = hparams.SIZES[profile]
    default = hparams.default_params(arch, "cifar10", profile)
    assert set(default) == set(hparams.SEARCHED)
    assert hparams.LR[0] <= default["lr"] <= hparams.LR[1]
    assert hparams.WEIGHT_DECAY[0] <= default["weight_decay"] <= hparams.WEIGHT_DECAY[1]
    assert hparams.LABEL_SMOOTHING[0] <= default["label_smoothing"] <= hparams.LABEL_SMOOTHING[1]
    assert default["batch_size"] in hparams.batch_choices(sizes)
    cfg = hparams.trial_config(arch, "cifar10", profile, sizes, default)  # a valid run configuration at the study's sizes
    assert (cfg.train_size, cfg.val_size, cfg.epochs, cfg.patience) == (sizes.train_size, sizes.val_size, sizes.epochs, sizes.epochs)


def test_every_suggested_setting_is_inside_the_bounds() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(60):
        params = hparams.suggest(study.ask(), hparams.SIZES["budget"])
        assert hparams.LR[0] <= params["lr"] <= hparams.LR[1]
        assert hparams.WEIGHT_DECAY[0] <= params["weight_decay"] <= hparams.WEIGHT_DECAY[1]
        assert hparams.LABEL_SMOOTHING[0] <= params["label_smoothing"] <= hparams.LABEL_SMOOTHING[1]
        assert params["batch_size"] in hparams.BATCH_SIZES
    assert hparams.batch_choices(StudySizes(3, 100, 2, 10)) == (32,)  # each searched batch gives at least 2 steps per epoch
    assert hparams.batch_choices(StudySizes(3, 512, 2, 10)) == hparams.BATCH_SIZES


# --------------------------------------------------------------------------------------------------------------
# A trial never sees the test set


def test_a_trial_never_reads_a_test_image(project_dir: Path, fixture_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(hparams.search_splits("mnist", TINY, str(fixture_data)).test_y) == 0  # the search's splits hold no test image
    splits = load_splits("mnist", TINY.train_size, TINY.val_size, None, str(fixture_data))  # a full split: the test part is there
    test_storage = splits.test_y.untyped_storage().data_ptr()
    iterated, evaluated = [], []
    real_iter, real_evaluate = BatchLoader.__iter__, train.evaluate

    def spy_iter(self: BatchLoader):
        iterated.append(self.y.untyped_storage().data_ptr())
        return real_iter(self)

    def spy_evaluate(model, loader, *args, **kwargs):
        evaluated.append(len(loader.y))
        return real_evaluate(model, loader, *args, **kwargs)

    monkeypatch.setattr(BatchLoader, "__iter__", spy_iter)
    monkeypatch.setattr(train, "evaluate", spy_evaluate)
    cfg = hparams.trial_config("lenet5", "mnist", "smoke", TINY, {"lr": 0.05, "weight_decay": 5e-4, "batch_size": 32, "label_smoothing": 0.1})
    rows = []
    acc = hparams.score(cfg, splits, rows.append)
    assert iterated and test_storage not in iterated
    assert evaluated and set(evaluated) <= {TINY.val_size, train.probe_images(TINY.val_size)}
    assert [r["epoch"] for r in rows] == [1, 2] and acc == max(r["val_acc"] for r in rows)


# --------------------------------------------------------------------------------------------------------------
# Pruning through fit's on_epoch hook


def completed(value: float) -> optuna.trial.FrozenTrial:
    """A finished trial that scored `value` after both epochs."""
    return optuna.trial.create_trial(value=value, params={"lr": 0.1}, distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1.0)},
                                     intermediate_values={1: value, 2: value})


def test_the_reporter_prunes_a_trial_below_the_median_but_never_at_its_last_epoch() -> None:
    study = hparams.make_study(TINY)
    study.add_trials([completed(0.8), completed(0.9)])
    low = hparams.pruning_reporter(study.ask(), epochs=2)
    with pytest.raises(optuna.TrialPruned):
        low({"epoch": 1, "val_acc": 0.1})
    high = hparams.pruning_reporter(study.ask(), epochs=2)
    high({"epoch": 1, "val_acc": 0.95})  # above the median: goes on
    last = hparams.pruning_reporter(study.ask(), epochs=1)
    last({"epoch": 1, "val_acc": 0.1})  # the last epoch: the trial is complete, not pruned


def test_fit_stops_a_pruned_trial_after_the_epoch(fixture_data: Path, project_dir: Path) -> None:
    study = hparams.make_study(TINY)
    study.add_trials([completed(0.99), completed(0.99)])  # no trial of a tiny run gets near: the first epoch is pruned
    splits = load_splits("mnist", TINY.train_size, TINY.val_size, None, str(fixture_data))
    cfg = hparams.trial_config("lenet5", "mnist", "smoke", TINY, {"lr": 0.05, "weight_decay": 5e-4, "batch_size": 32, "label_smoothing": 0.1})
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        hparams.score(cfg, splits, hparams.pruning_reporter(trial, TINY.epochs))
    assert list(study.trials[-1].intermediate_values) == [1]  # stopped after the first of two epochs


# --------------------------------------------------------------------------------------------------------------
# A whole study, its record and its text (training replaced by a score computed from the setting)


def fake_score(cfg, splits, on_epoch) -> float:
    """A stand-in for training: validation accuracy peaks at a learning rate of 0.1 and rises with the epoch."""
    acc = 0.0
    for epoch in (1, 2):
        acc = float(np.clip(0.9 - 0.2 * abs(np.log10(cfg.lr) + 1) - 0.1 * (2 - epoch), 0, 1))
        on_epoch({"epoch": epoch, "val_acc": acc})
    return acc


@pytest.fixture
def found(project_dir: Path, fixture_data: Path, monkeypatch: pytest.MonkeyPatch) -> hparams.Search:
    monkeypatch.setitem(hparams.SIZES, "smoke", StudySizes(trials=8, train_size=64, epochs=2, val_size=64))
    monkeypatch.setattr(hparams, "score", fake_score)
    return hparams.search("lenet5", "mnist", "smoke", str(fixture_data))


def test_a_study_starts_from_the_default_recipe_and_records_every_trial(found: hparams.Search, project_dir: Path) -> None:
    default = hparams.default_params("lenet5", "mnist", "smoke")
    assert found.study.trials[0].params == default
    saved = json.loads((project_dir / "results" / "smoke" / "hparams-mnist-lenet5.json").read_text())
    assert saved["kind"] == "study" and len(saved["trials"]) == 8 == saved["metrics"]["trials"]
    states = [t["state"] for t in saved["trials"]]
    assert saved["metrics"]["pruned"] == states.count("pruned") >= 1 and saved["metrics"]["completed"] == states.count("complete")
    assert all(len(t["intermediate"]) == 1 for t in saved["trials"] if t["state"] == "pruned")  # stopped after the first epoch
    assert saved["metrics"]["default_val_acc"] == found.study.trials[0].value
    assert saved["metrics"]["best_val_acc"] == max(t.value for t in found.completed())
    for row, trial in zip(saved["trials"], found.study.trials):
        assert row["params"] == trial.params and row["intermediate"] == {str(k): v for k, v in trial.intermediate_values.items()}


def test_the_same_study_again_gives_the_same_trials(found: hparams.Search, fixture_data: Path) -> None:
    again = hparams.search("lenet5", "mnist", "smoke", str(fixture_data))
    assert [t.params for t in again.study.trials] == [t.params for t in found.study.trials]


def test_study_text_and_the_trials_table_come_from_the_study(found: hparams.Search) -> None:
    m = found.record["metrics"]
    text = hparams.study_text(found)
    assert f"{100 * m['best_val_acc']:.2f}%" in text and f"{100 * m['default_val_acc']:.2f}%" in text
    assert f"{len(found.study.trials)} trials" in text and f"stopped {m['pruned']}" in text
    assert "beat" not in text  # validation scores are not a test: no claim of a win
    table = hparams.trials_table(found)
    assert table.round(4)["weight decay"].tolist() == [f"{t.params['weight_decay']:.3g}" for t in found.study.trials]  # never 0.0000
    assert hparams.importances(found) is None  # 8 trials, some pruned: below the 9 completed ones importances need
    assert f"too few completed trials ({m['completed']} of 8; importances need 9)" in hparams.importance_text(found, None)
    assert hparams.sensitivity_figure(found).axes[0].get_ylabel()  # the slice plot is drawn all the same


# --------------------------------------------------------------------------------------------------------------
# Small fake studies: the texts, the trials table and the importances (no training)

DISTRIBUTIONS = {"lr": optuna.distributions.FloatDistribution(*hparams.LR, log=True),
                 "weight_decay": optuna.distributions.FloatDistribution(*hparams.WEIGHT_DECAY, log=True),
                 "batch_size": optuna.distributions.CategoricalDistribution(hparams.BATCH_SIZES),
                 "label_smoothing": optuna.distributions.FloatDistribution(*hparams.LABEL_SMOOTHING)}
PRUNED_SCORE = 0.1  # a pruned trial's score: Optuna keeps its last reported epoch's


def fake_params(i: int, n: int) -> dict:
    """Trial i of n's setting: the learning rate rises with i across its range, the other parameters are seeded draws."""
    rng = np.random.default_rng(i)
    return {"lr": float(np.geomspace(*hparams.LR, n)[i]), "weight_decay": float(np.exp(rng.uniform(*np.log(hparams.WEIGHT_DECAY)))),
            "batch_size": int(rng.choice(hparams.BATCH_SIZES)), "label_smoothing": float(rng.uniform(*hparams.LABEL_SMOOTHING))}


def fake_search(scores: list[float], pruned: int = 0) -> hparams.Search:
    """A finished search: trial 0 (the default recipe) and the next ran to the end with `scores`, then `pruned` trials stopped after epoch 1."""
    n = len(scores) + pruned
    study = optuna.create_study(direction="maximize")
    study.add_trials([optuna.trial.create_trial(value=v, params=fake_params(i, n), distributions=DISTRIBUTIONS, intermediate_values={1: v, 2: v})
                      for i, v in enumerate(scores)])
    study.add_trials([optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, value=PRUNED_SCORE, params=fake_params(i, n),
                                                distributions=DISTRIBUTIONS, intermediate_values={1: PRUNED_SCORE})
                      for i in range(len(scores), n)])
    record = {"metrics": hparams.study_metrics(study, study.trials[0].params), "trials": hparams.trial_rows(study)}
    return hparams.Search("fastnet", "cifar10", "budget", hparams.SIZES["budget"], study, record)


def test_a_kept_default_says_how_many_trials_ran_to_the_end_and_how_many_were_pruned() -> None:
    found = fake_search([PRUNED_SCORE, 0.05, 0.07], pruned=2)  # the pruned trials' partial scores equal the default's: no tie
    runs = {"default recipe": final_record("d", np.arange(100) < 70, 0.05)}
    text = hparams.test_text(found, runs)
    assert ("None of the 2 other trial(s) that ran to the end scored above the default recipe's validation accuracy of 10.00%, "
            "and none tied it") in text
    assert "The 2 stopped trial(s) were cut short" in text and "70.00% on 100 test images" in text
    assert "no sampled setting" not in text and "beats" not in text
    assert hparams.kept_text(found.record) in hparams.study_text(found)  # one wording for the search and for the test


def test_a_tie_with_the_default_is_named_a_tie() -> None:
    found = fake_search([0.5, 0.5, 0.3, 0.5])
    assert found.study.best_trial.number == 0  # Optuna keeps the first of tied trials
    text = hparams.test_text(found, {"default recipe": final_record("d", np.arange(100) < 70, 0.05)})
    assert "trials 1, 3 tied it, and Optuna keeps the first of tied trials, the default" in text
    assert "No trial was stopped by the pruner" in text


def test_a_clear_winner_is_the_best_and_a_tied_one_is_named_a_tie() -> None:
    clear = hparams.study_text(fake_search([0.5, 0.7, 0.6], pruned=1))
    assert "The best, trial 1 (" in clear and "tied" not in clear and "a gain of 20.00 points" in clear
    tied = hparams.study_text(fake_search([0.5, 0.7, 0.7]))
    assert "tied with trial 2 (Optuna keeps the first of tied trials)" in tied


def test_the_trials_table_marks_a_pruned_trials_score_as_taken_at_pruning() -> None:
    table = hparams.trials_table(fake_search([0.5, 0.6], pruned=1))
    assert "val acc (%) selected" not in table.columns and "at pruning" in hparams.SCORE_COLUMN
    pruned = table[table["state"] == "pruned"].iloc[0]
    assert pruned[hparams.SCORE_COLUMN] == pytest.approx(100 * PRUNED_SCORE) == pruned["val acc (%) epoch 1"]
    assert np.isnan(pruned["val acc (%) epoch 2"])


def test_importances_need_two_completed_trials_per_searched_parameter_and_one_more() -> None:
    assert hparams.MIN_IMPORTANCE_TRIALS == 2 * len(hparams.SEARCHED) + 1 == 9
    below = fake_search([0.3 + 0.05 * i for i in range(8)], pruned=2)
    assert hparams.importances(below) is None
    text = hparams.importance_text(below, None)
    assert "too few completed trials (8 of 10; importances need 9) to estimate importances" in text and "none are shown" in text
    assert "the 2 pruned trial(s), cut short" in text
    at = fake_search([0.3 + 0.05 * i for i in range(9)], pruned=1)  # the score rises with the learning rate alone
    shares = hparams.importances(at)
    assert shares is not None and set(shares) == set(hparams.SEARCHED) and sum(shares.values()) == pytest.approx(1)
    assert max(shares, key=shares.get) == "lr"
    assert "over the 9 completed trials" in hparams.importance_text(at, shares)
    assert hparams.importance_figure(at, shares).axes[0].get_xlabel()


def test_equal_scores_give_a_sentence_not_importances() -> None:
    flat = fake_search([0.5] * 9, pruned=1)
    assert hparams.importances(flat) is None
    text = hparams.importance_text(flat, None)
    assert "all 9 completed trials scored the same" in text and "pruned" not in text  # the reason is the flat scores, not pruning


# --------------------------------------------------------------------------------------------------------------
# The test comparison: "beats" only where McNemar's test is significant


def final_record(name: str, correct: np.ndarray, lr: float) -> dict:
    """A training record whose per-image test predictions are right exactly where `correct` says."""
    y_true = torch.arange(len(correct)) % 10
    y_pred = torch.where(torch.as_tensor(correct), y_true, (y_true + 1) % 10)
    metrics = {"test_acc": float(np.mean(correct)), "best_val_acc": 0.5, "epochs_run": 1}
    config = {"lr": lr, "weight_decay": 5e-4, "batch_size": 32, "label_smoothing": 0.1}
    return make_record("train", name, "smoke", config, metrics, device="cpu", data={"sizes": {"train": 64, "test": len(correct)}}, seed=0,
                       wall_time_s=1.0, predictions=encode_predictions(y_true, y_pred, torch.ones(len(correct))))


def test_a_small_gain_is_reported_as_indistinguishable() -> None:
    default = np.arange(200) < 120
    chosen = default.copy()
    chosen[120:126] = True  # 6 discordant images, all one way: exact p = 2 / 2**6 ≈ 0.031, above α = 0.01
    runs = {"default recipe": final_record("d", default, 0.05), "chosen setting": final_record("c", chosen, 0.1)}
    text = hparams.test_text(fake_search([0.5, 0.6]), runs, alpha=0.01)
    assert "beats" not in text and "indistinguishable" in text
    assert "63.00%" in text and "60.00%" in text and "+3.00 points" in text
    assert list(hparams.final_table(runs)["test acc (%)"]) == [60.0, 63.0]


def test_a_significant_difference_names_the_winner_either_way() -> None:
    default, chosen = np.arange(400) < 200, np.arange(400) < 300
    runs = {"default recipe": final_record("d", default, 0.05), "chosen setting": final_record("c", chosen, 0.1)}
    found = fake_search([0.5, 0.6])
    assert "the chosen setting beats the default recipe" in hparams.test_text(found, runs)
    swapped = {"default recipe": runs["chosen setting"], "chosen setting": runs["default recipe"]}
    assert "the default recipe beats the chosen setting" in hparams.test_text(found, swapped)


def test_a_record_is_reused_only_with_the_same_recipe_and_its_predictions() -> None:
    cfg = make_config("lenet5", "mnist", "smoke")
    record = {"config": cfg.to_dict(), "predictions": {}}
    assert same_recipe(record, cfg) and hparams.reusable(record, cfg)
    assert not same_recipe({"config": {**cfg.to_dict(), "train_size": 7}}, cfg)
    assert not hparams.reusable({**record, "config": {**cfg.to_dict(), "train_size": 7}}, cfg)
    assert not hparams.reusable({"config": cfg.to_dict()}, cfg)  # no test predictions: McNemar's test could not use it
    assert not hparams.reusable(None, cfg)


def stored_final_runs(found: hparams.Search, stored: dict[str, dict], monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, dict], list[str]]:
    """final_runs against the stored records `stored` (by run name), training replaced: the runs and the names of those trained."""
    trained = []

    def fake_run(cfg: RunConfig, data_dir: str | None = None) -> SimpleNamespace:
        trained.append(cfg.run_name)
        return SimpleNamespace(record={"name": cfg.run_name, "config": cfg.to_dict(), "fresh": True})

    monkeypatch.setattr(hparams, "read_record", lambda profile, name: stored.get(name))
    monkeypatch.setattr(hparams, "run", fake_run)
    return hparams.final_runs(found), trained


def stored_record(found: hparams.Search, params: dict, **changes) -> dict:
    """A stored training record of `params` at the study's sizes, with test predictions; `changes` alter its recipe."""
    cfg = hparams.trial_config(found.arch, found.dataset, found.profile, found.sizes, params)
    return {"name": cfg.run_name, "config": {**cfg.to_dict(), **changes}, "predictions": {}}


def test_the_final_runs_reuse_each_matching_record_and_train_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    kept = fake_search([0.5, 0.4])
    default = stored_record(kept, kept.study.trials[0].params)
    runs, trained = stored_final_runs(kept, {default["name"]: default}, monkeypatch)
    assert runs == {"default recipe": default} and trained == []  # the default won: one run, tested once already
    won = fake_search([0.5, 0.6])
    default, chosen = stored_record(won, won.study.trials[0].params), stored_record(won, won.chosen())
    runs, trained = stored_final_runs(won, {default["name"]: default, chosen["name"]: chosen}, monkeypatch)
    assert runs == {"default recipe": default, "chosen setting": chosen} and trained == []  # executing again re-tests nothing
    other = stored_record(won, won.chosen(), epochs=won.sizes.epochs + 1)
    runs, trained = stored_final_runs(won, {default["name"]: default, chosen["name"]: other}, monkeypatch)
    assert trained == [chosen["name"]] and runs["chosen setting"]["fresh"] and runs["default recipe"] is default
