"""The hyper-parameter study: a seeded TPE search with a median pruner over learning rate, weight decay, batch size and label
smoothing, scored on the validation split alone; then one test evaluation of the chosen setting against the default recipe.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import seaborn as sns

from . import stats
from .config import PROFILES, RunConfig, make_config, number, same_recipe
from .data import Splits, load_splits
from .errors import DnicError
from .experiment import model_for_run, run, run_loaders
from .models import model_spec
from .records import make_record, read_record, test_predictions, write_record
from .train import fit, seed_everything


@dataclass(frozen=True)
class StudySizes:
    """The study's sizes in one profile."""

    trials: int  # trials per architecture, the default recipe's included
    train_size: int  # training images per trial
    epochs: int  # epochs per trial: at least 2, so that the pruner can compare trials after the first
    val_size: int  # validation images that score a trial, carved from the training split (never the test set)


# Smoke and quick, pipeline checks: two steps of the profile's batch per epoch, on the profile's validation split. Budget: both
# architectures' searches and their two final runs fit about an hour on a 2-core fp32 CPU (the budget record of 8 trials on
# the AMD EPYC: about 40 s per FastNet trial, 75 s per finished and 37 s per pruned MiniGoogLeNet trial); 20 trials, so that
# about half still finish with the median pruner, enough for the importances (MIN_IMPORTANCE_TRIALS); 1,000 validation
# images, as the profile's 5,000 would cost each trial more evaluation than training.
SIZES: dict[str, StudySizes] = {
    "smoke": StudySizes(trials=3, train_size=2 * PROFILES["smoke"].batch_size, epochs=2, val_size=PROFILES["smoke"].val_size),
    "quick": StudySizes(trials=3, train_size=2 * PROFILES["quick"].batch_size, epochs=2, val_size=PROFILES["quick"].val_size),
    "budget": StudySizes(trials=20, train_size=2_000, epochs=2, val_size=1_000),
    "full": StudySizes(trials=40, train_size=20_000, epochs=4, val_size=PROFILES["full"].val_size),
}
SEED = 0  # of the sampler and of every trial's weights and batches: the same study again gives the same trials
LR = (3e-3, 1.0)  # peak learning rate, searched on a log scale
WEIGHT_DECAY = (1e-5, 1e-2)  # log scale
LABEL_SMOOTHING = (0.0, 0.3)
BATCH_SIZES = (32, 64, 128, 256)  # those with at least 2 steps per epoch of a trial are searched
PRUNER_STARTUP = 2  # trials that run to the end before the median rule may stop one
SEARCHED = ("lr", "weight_decay", "batch_size", "label_smoothing")
LABELS = {"lr": "peak learning rate", "weight_decay": "weight decay", "batch_size": "batch size", "label_smoothing": "label smoothing"}


def batch_choices(sizes: StudySizes) -> tuple[int, ...]:
    """The batch sizes searched: those that give a trial at least 2 optimizer steps per epoch."""
    return tuple(b for b in BATCH_SIZES if 2 * b <= sizes.train_size)


def space_table(sizes: StudySizes) -> pd.DataFrame:
    """The search space as a table: each parameter's range or choices and its scale."""
    rows = [("lr", f"{LR[0]:g} – {LR[1]:g}", "log"), ("weight_decay", f"{WEIGHT_DECAY[0]:g} – {WEIGHT_DECAY[1]:g}", "log"),
            ("batch_size", ", ".join(map(str, batch_choices(sizes))), "categorical"),
            ("label_smoothing", f"{LABEL_SMOOTHING[0]:g} – {LABEL_SMOOTHING[1]:g}", "linear")]
    return pd.DataFrame([{"parameter": LABELS[k], "searched over": r, "scale": s} for k, r, s in rows]).set_index("parameter")


def suggest(trial: optuna.Trial, sizes: StudySizes) -> dict:
    """One trial's setting, drawn by the study's sampler from the search space."""
    return {"lr": trial.suggest_float("lr", *LR, log=True), "weight_decay": trial.suggest_float("weight_decay", *WEIGHT_DECAY, log=True),
            "batch_size": trial.suggest_categorical("batch_size", batch_choices(sizes)),
            "label_smoothing": trial.suggest_float("label_smoothing", *LABEL_SMOOTHING)}


def default_params(arch: str, dataset: str, profile: str) -> dict:
    """The default recipe's values of the searched parameters: the profile's batch, its derived learning rate, the architecture's smoothing."""
    cfg = make_config(arch, dataset, profile)
    return {k: getattr(cfg, k) for k in SEARCHED}


def trial_config(arch: str, dataset: str, profile: str, sizes: StudySizes, params: dict) -> RunConfig:
    """A trial's run configuration (and a final run's, with the profile's test set).

    It has the study's sizes, no early stopping (the pruner stops trials) and the setting's parameters.
    """
    return make_config(arch, dataset, profile, train_size=sizes.train_size, val_size=sizes.val_size, epochs=sizes.epochs,
                       patience=sizes.epochs, seed=SEED, **params)


def search_splits(dataset: str, sizes: StudySizes, data_dir: str | None = None) -> Splits:
    """The trials' training and validation images, with the test part emptied: nothing in the search can see a test image."""
    splits = load_splits(dataset, sizes.train_size, sizes.val_size, None, data_dir)
    return replace(splits, test_x=splits.test_x[:0], test_y=splits.test_y[:0])


def score(cfg: RunConfig, splits: Splits, on_epoch: Callable[[dict], None] | None = None) -> float:
    """Train one trial from its seed and return the validation accuracy of its selected epoch; on_epoch sees each epoch's row."""
    seed_everything(cfg.seed)
    loaders = run_loaders(splits, cfg)
    model = model_for_run(cfg, splits, loaders)
    with tempfile.TemporaryDirectory(prefix="dnic-trial-") as folder:  # a trial's checkpoint is of no use once it has ended
        result = fit(model, loaders.train, loaders.val, cfg, Path(folder), resume=False, data_id=splits.data_id, on_epoch=on_epoch)
    return result.best["val_acc"]


def pruning_reporter(trial: optuna.Trial, epochs: int) -> Callable[[dict], None]:
    """fit's on_epoch hook: report the epoch's validation accuracy to the trial, and stop it (TrialPruned) where the pruner says so.

    The last epoch is reported but never pruned: the trial is complete by then.
    """

    def report(row: dict) -> None:
        """Report one epoch's row; raise optuna.TrialPruned if the median rule stops the trial here."""
        trial.report(row["val_acc"], row["epoch"])
        if row["epoch"] < epochs and trial.should_prune():
            raise optuna.TrialPruned(f"epoch {row['epoch']}: validation accuracy {row['val_acc']:.4f} below the median of earlier trials")

    return report


def make_study(sizes: StudySizes) -> optuna.Study:
    """A fresh in-memory study: seeded multivariate TPE (random for the first third of the trials) and the median pruner."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate TPE is marked experimental
        sampler = optuna.samplers.TPESampler(seed=SEED, n_startup_trials=max(1, sizes.trials // 3), multivariate=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP, n_warmup_steps=0)
    return optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)


@dataclass
class Search:
    """A finished search for one architecture: the study, its sizes and the record that keeps every trial."""

    arch: str
    dataset: str
    profile: str
    sizes: StudySizes
    study: optuna.Study
    record: dict

    @property
    def title(self) -> str:
        """The architecture's display name."""
        return model_spec(self.arch).title

    @property
    def name(self) -> str:
        """The stable name of the study's record and figures: 'hparams-cifar10-fastnet'."""
        return study_name(self.dataset, self.arch)

    def completed(self) -> list[optuna.trial.FrozenTrial]:
        """The trials that ran to the end."""
        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))

    def chosen(self) -> dict:
        """The best trial's setting (the default recipe's if it was best)."""
        return dict(self.study.best_trial.params)


def study_name(dataset: str, arch: str) -> str:
    """The stable name of one architecture's study: 'hparams-<dataset>-<arch>'."""
    return f"hparams-{dataset}-{arch}"


def trial_rows(study: optuna.Study) -> list[dict]:
    """Every trial as a plain row: its number, state, setting, score, per-epoch validation accuracy and seconds."""
    return [{"number": t.number, "state": t.state.name.lower(), "params": t.params, "value": t.value,
             "intermediate": {int(k): v for k, v in t.intermediate_values.items()},
             "seconds": t.duration.total_seconds() if t.duration else None} for t in study.trials]


def study_metrics(study: optuna.Study, default: dict) -> dict:
    """The study's outcome for its record: the best trial (the first of tied ones) and its score, the default's, and the trials' states."""
    states = [t.state for t in study.trials]
    return {"best_val_acc": study.best_value, "best_trial": study.best_trial.number, "best_params": study.best_trial.params,
            "default_val_acc": study.trials[0].value, "default_params": default, "trials": len(states),
            "completed": states.count(optuna.trial.TrialState.COMPLETE), "pruned": states.count(optuna.trial.TrialState.PRUNED)}


def search(arch: str, dataset: str, profile: str, data_dir: str | None = None) -> Search:
    """Run one architecture's study on the validation split (the default recipe first, then the sampler's settings); record every trial."""
    start = time.perf_counter()
    sizes = SIZES[profile]
    splits = search_splits(dataset, sizes, data_dir)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trials' table replaces Optuna's line per study and per trial
    study = make_study(sizes)
    default = default_params(arch, dataset, profile)
    study.enqueue_trial(default)  # trial 0: the default recipe, scored on the same images, so the gain is measured, not assumed

    def objective(trial: optuna.Trial) -> float:
        """Score one trial's setting."""
        cfg = trial_config(arch, dataset, profile, sizes, suggest(trial, sizes))
        return score(cfg, splits, pruning_reporter(trial, sizes.epochs))

    try:
        study.optimize(objective, n_trials=sizes.trials)
    finally:
        optuna.logging.set_verbosity(verbosity)
    cfg = trial_config(arch, dataset, profile, sizes, default)
    config = {"arch": arch, "dataset": dataset, "sizes": asdict(sizes), "seed": SEED, "device": cfg.device, "amp": cfg.amp,
              "space": {"lr": LR, "weight_decay": WEIGHT_DECAY, "batch_size": batch_choices(sizes), "label_smoothing": LABEL_SMOOTHING},
              "sampler": "TPE (multivariate, seeded)", "pruner": f"median, after {PRUNER_STARTUP} trials, per epoch"}
    record = make_record("study", study_name(dataset, arch), profile, config, study_metrics(study, default), device=cfg.device,
                         data={"dataset": dataset, **splits.source, "sizes": splits.sizes()}, seed=SEED,
                         wall_time_s=time.perf_counter() - start, trials=trial_rows(study))
    write_record(record)
    return Search(arch, dataset, profile, sizes, study, record)


SCORE_COLUMN = "val acc (%) selected epoch, or at pruning"  # Optuna keeps a pruned trial's last reported epoch as its score


def trials_table(found: Search) -> pd.DataFrame:
    """The trials in order: setting, validation accuracy per epoch and at the selected epoch (or at pruning), state and seconds."""
    rows = []
    for row in found.record["trials"]:
        params = row["params"]
        # the log-scale settings as text, so that a rounded display never shows a weight decay of 2.5e-05 as 0.0000
        rows.append({"trial": row["number"], "peak lr": f"{params['lr']:.3g}", "weight decay": f"{params['weight_decay']:.3g}", "batch": params["batch_size"],
                     "label smoothing": params["label_smoothing"],
                     **{f"val acc (%) epoch {e}": 100 * v for e, v in sorted(row["intermediate"].items())},
                     SCORE_COLUMN: 100 * row["value"] if row["value"] is not None else np.nan,
                     "state": "default recipe" if row["number"] == 0 and row["state"] == "complete" else row["state"],
                     "seconds": row["seconds"]})
    return pd.DataFrame(rows).set_index("trial")


def setting_text(params: dict) -> str:
    """A setting in words: 'peak learning rate 0.1, weight decay 0.0005, batch size 128, label smoothing 0.2'."""
    return ", ".join(f"{LABELS[k]} {params[k]:.3g}" if k != "batch_size" else f"{LABELS[k]} {params[k]}" for k in SEARCHED)


def trial_list(numbers: list[int]) -> str:
    """Trial numbers in words: 'trial 3' or 'trials 3, 5'."""
    return f"trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"


def tied_trials(record: dict) -> list[int]:
    """The completed trials other than the best that tied its validation accuracy: Optuna keeps the first of tied trials as best."""
    m = record["metrics"]
    return [r["number"] for r in record["trials"]
            if r["state"] == "complete" and r["number"] != m["best_trial"] and r["value"] == m["best_val_acc"]]


def kept_text(record: dict) -> str:
    """Why the search kept the default recipe, in words: the other trials that ran to the end, those that tied it, those cut short."""
    m, tied = record["metrics"], tied_trials(record)
    tie = (f"; {trial_list(tied)} tied it, and Optuna keeps the first of tied trials, the default" if tied else ", and none tied it")
    pruned = (f" The {m['pruned']} stopped trial(s) were cut short, so their scores are not those of a finished run: the search cannot say "
              "how they would have ended." if m["pruned"] else " No trial was stopped by the pruner.")
    return (f"None of the {m['completed'] - 1} other trial(s) that ran to the end scored above the default recipe's validation accuracy of "
            f"{100 * m['default_val_acc']:.2f}%{tie}, so the default ({setting_text(m['default_params'])}) is kept.{pruned}")


def study_text(found: Search) -> str:
    """What the search found, in words formatted from its record: trials, pruning, the best setting and its gain over the default on validation."""
    m, sizes = found.record["metrics"], found.sizes
    head = (f"**{found.title}**: {m['trials']} trials of {sizes.train_size:,} training images × {sizes.epochs} epochs, each scored on "
            f"the same {sizes.val_size:,} validation images; {m['completed']} ran to the end and the median rule stopped {m['pruned']} "
            f"after an epoch below the median of the earlier trials.")
    if m["best_trial"] == 0:
        return f"{head} {kept_text(found.record)}"
    gain = 100 * (m["best_val_acc"] - m["default_val_acc"])
    tied = tied_trials(found.record)
    tie = f", tied with {trial_list(tied)} (Optuna keeps the first of tied trials)," if tied else ""
    return head + (f" The best, trial {m['best_trial']} ({setting_text(m['best_params'])}){tie} reached {100 * m['best_val_acc']:.2f}% against "
                   f"the default recipe's {100 * m['default_val_acc']:.2f}% ({setting_text(m['default_params'])}): "
                   f"{'a gain' if gain >= 0 else 'a loss'} of {abs(gain):.2f} points on validation. The best of {m['completed']} scores "
                   "on the same images is biased upwards (it was picked for being high), which is why the test set, unseen so far, judges it.")


# Completed trials (pruned ones have no final score) before fANOVA's forest, fitted to one score per trial, says anything: two per
# searched parameter and one more.
MIN_IMPORTANCE_TRIALS = 2 * len(SEARCHED) + 1


def importance_gap(found: Search) -> str | None:
    """Why fANOVA's importances cannot be estimated from this study, in words, or None where they can."""
    done = found.completed()
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return (f"too few completed trials ({len(done)} of {len(found.study.trials)}; importances need {MIN_IMPORTANCE_TRIALS}) "
                "to estimate importances")
    if len({t.value for t in done}) < 2:
        return f"all {len(done)} completed trials scored the same, so there is no variance to share out"
    return None


def importances(found: Search) -> dict[str, float] | None:
    """fANOVA's share of the variance of validation accuracy per searched parameter (seeded), or None where it cannot say."""
    if importance_gap(found):
        return None
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=SEED)
    return optuna.importance.get_param_importances(found.study, evaluator=evaluator, params=list(SEARCHED))


def importance_text(found: Search, shares: dict[str, float] | None) -> str:
    """The importances in words, or why there are none."""
    done = len(found.completed())
    if shares is None:
        cut = found.record["metrics"]["pruned"]
        why = f" (the {cut} pruned trial(s), cut short, have no final score to fit)" if cut and done < MIN_IMPORTANCE_TRIALS else ""
        return f"{found.title}: {importance_gap(found)}, so none are shown{why}; the slice plots still show every completed trial."
    ranked = "; ".join(f"{LABELS[k]} {v:.0%}" for k, v in shares.items())
    return (f"{found.title}: fANOVA attributes the variance of validation accuracy over the {done} completed trials to {ranked}. "
            "With this few trials the shares are rough: they say where to look, not how much each parameter matters in general.")


def importance_figure(found: Search, shares: dict[str, float]) -> plt.Figure:
    """Bars of each parameter's fANOVA share of the variance of validation accuracy."""
    table = pd.DataFrame({"parameter": [LABELS[k] for k in shares], "share (%)": [100 * v for v in shares.values()]})
    fig, ax = plt.subplots(figsize=(6, 2.6))
    sns.barplot(data=table, x="share (%)", y="parameter", ax=ax, color=sns.color_palette()[0])
    ax.set(xlabel="share of the variance of validation accuracy (%, fANOVA)", ylabel="hyper-parameter",
           title=f"{found.title}: hyper-parameter importance")
    fig.tight_layout()
    return fig


def sensitivity_figure(found: Search) -> plt.Figure:
    """Validation accuracy of every completed trial against each searched parameter (Optuna's slice plot)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Attempting to set identical low and high xlims")  # a parameter with a single choice
        axes = np.atleast_1d(optuna.visualization.matplotlib.plot_slice(found.study, params=list(SEARCHED), target_name="validation accuracy"))
    for ax in axes.flat:
        ax.set_xlabel(LABELS.get(ax.get_xlabel(), ax.get_xlabel()))
    axes.flat[0].set_ylabel("validation accuracy (selected epoch)")
    fig = axes.flat[0].figure
    fig.suptitle(f"{found.title}: validation accuracy against each hyper-parameter")
    return fig


def reusable(record: dict | None, cfg: RunConfig) -> bool:
    """True when a stored record can stand for cfg's run: it holds test predictions and was trained with exactly cfg's recipe."""
    return record is not None and "predictions" in record and same_recipe(record, cfg)


def tested_record(cfg: RunConfig, data_dir: str | None = None) -> dict:
    """cfg's training record: the stored one where it is reusable, else a fresh run's, so that each run looks at the test set once."""
    stored = read_record(cfg.profile, cfg.run_name)
    return stored if reusable(stored, cfg) else run(cfg, data_dir).record


def final_runs(found: Search, data_dir: str | None = None) -> dict[str, dict]:
    """The one test evaluation of the default recipe and of the chosen setting, trained at the study's sizes: their training records.

    Each record is reused where one is stored with the same recipe and sizes and its test predictions; otherwise it is trained here.
    When the default recipe won the search, it is the only run.
    """
    default = trial_config(found.arch, found.dataset, found.profile, found.sizes, found.record["metrics"]["default_params"])
    runs = {"default recipe": tested_record(default, data_dir)}
    if found.record["metrics"]["best_trial"] != 0:
        runs["chosen setting"] = tested_record(trial_config(found.arch, found.dataset, found.profile, found.sizes, found.chosen()), data_dir)
    return runs


def final_table(runs: dict[str, dict]) -> pd.DataFrame:
    """The final runs side by side: setting, training size and epochs, validation accuracy of the selected epoch, test accuracy."""
    rows = []
    for label, record in runs.items():
        c, m = record["config"], record["metrics"]
        rows.append({"run": label, "record": record["name"], "peak lr": f"{c['lr']:.3g}", "weight decay": f"{c['weight_decay']:.3g}", "batch": c["batch_size"],
                     "label smoothing": c["label_smoothing"], "training images": record["data"]["sizes"]["train"], "epochs": m["epochs_run"],
                     "val acc (%)": 100 * m["best_val_acc"], "test acc (%)": 100 * m["test_acc"], "test images": record["data"]["sizes"]["test"]})
    return pd.DataFrame(rows).set_index("run")


def test_text(found: Search, runs: dict[str, dict], alpha: float = 0.05) -> str:
    """The single test evaluation of each run in words, and McNemar's test of the two on the same test images.

    It says the chosen setting beats the default recipe (or the reverse) only where the test is significant at alpha.
    """
    number(0, 1, low_open=True)("alpha", alpha)
    title, default = found.title, runs["default recipe"]
    acc = 100 * default["metrics"]["test_acc"]
    n = default["data"]["sizes"]["test"]
    if "chosen setting" not in runs:
        return f"{title}: {kept_text(found.record)} The default is the one setting tested: {acc:.2f}% on {n:,} test images."
    chosen = runs["chosen setting"]
    a, b = test_predictions(chosen), test_predictions(default)
    if not np.array_equal(a["y_true"], b["y_true"]):
        raise DnicError(f"Records {chosen['name']!r} and {default['name']!r} were tested on different images: McNemar's test needs the same ones.",
                        "re-run both final runs of the study in one profile and on one data source (notebook 45, or hparams.final_runs).")
    test = stats.mcnemar(a["y_pred"] == a["y_true"], b["y_pred"] == b["y_true"])
    chosen_acc = 100 * chosen["metrics"]["test_acc"]
    facts = (f"{title}: on the same {n:,} test images, each run evaluated once, the chosen setting scores {chosen_acc:.2f}% and the default "
             f"recipe {acc:.2f}% ({chosen_acc - acc:+.2f} points). The chosen setting alone is right on {test.only_a:,} images and the "
             f"default alone on {test.only_b:,}; McNemar's test ({test.test}) gives p = {test.p_value:.3g}.")
    if test.p_value >= alpha:
        return facts + f" At α = {alpha:g} the two are indistinguishable on this test set: the search's gain is not confirmed."
    winner, loser = ("chosen setting", "default recipe") if test.only_a > test.only_b else ("default recipe", "chosen setting")
    return facts + f" At α = {alpha:g} the {winner} beats the {loser} on this test set."
