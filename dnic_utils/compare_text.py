"""The comparison's prose formatted from the records and tests."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from . import stats
from .compare import ALPHA, COSTS, Selection, front_names, seed_table
from .config import quiet_default, training_recipe_fields, tta_views
from .data import dataset_info
from .devices import SHARED_CPU, wait_pct
from .models import REGISTRY, model_spec
from .seeds import SEED_MINUTES, seeded


def _span(values: list[int]) -> str:
    """'4' for one value, '500 to 20,000' for several."""
    return f"{values[0]:,}" if len(set(values)) == 1 else f"{min(values):,} to {max(values):,}"


def _ordinal(rank: float) -> str:
    """1st, 2nd, 3rd, 4th, … 11th, 12th, 13th, 21st (a tied rank such as 2.5 is rounded)."""
    n = int(round(rank))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def cost_text(table: pd.DataFrame) -> str:
    """The Pareto fronts per cost, and how well FLOPs predict the measured latency here (rank correlation, biggest disagreement)."""
    if table.empty:
        return "No runs to compare."
    lines = [f"On {label}, the Pareto front (no model both cheaper and more accurate) is: {', '.join(front_names(table, cost)) or '—'}."
             for cost, label in COSTS.items()]
    augmented = table[table["views"] > 1]
    if len(augmented):
        listed = ", ".join(f"{name} {int(row['views'])} ({row['tta']})" for name, row in augmented.iterrows())
        lines.append(f"Some accuracies average several forward passes per test image (test-time augmentation, in their architecture's recipe: "
                     f"{listed}), so on the FLOPs and latency fronts those models pay for every view; their single-pass costs are in the table.")
    timed = table.dropna(subset=["flops", "latency_1"])
    if len(timed) >= 3:
        lines.append(flops_latency_text(timed))
    retimed = table[table["timed_seed"] != 0]
    if len(retimed):
        seeds = ", ".join(f"{name} seed {int(s)}" for name, s in retimed["timed_seed"].items())
        lines.append(f"Training time, images/s and CPU wait are from another seed's run where the default seed's run shared the CPU "
                     f"(waited for a core {wait_pct(SHARED_CPU)}% of its runnable time or more) and that seed's waited less: {seeds}.")
    shared = table[table["cpu_wait"] >= SHARED_CPU]  # NaN (not measured) compares False
    if len(shared):
        waits = ", ".join(f"{name} {wait_pct(w)}%" for name, w in shared["cpu_wait"].items())
        lines.append(f"Some runs shared the CPU with other work: their threads waited for a core during part of their training "
                     f"({waits} of the run's runnable time), so their training times and images/s overstate their cost here.")
    return "\n\n".join(lines)


MISPREDICT_RHO, MISPREDICT_RANKS = 0.9, 3  # below this rank correlation, or a model this many ranks off, FLOPs mispredict latency


def flops_latency_text(timed: pd.DataFrame) -> str:
    """How well FLOPs order the measured single-image latencies (Spearman), the models they misplace most, and what follows."""
    flops_rank, latency_rank = timed["flops"].rank(), timed["latency_1"].rank()
    rho = scipy_stats.spearmanr(timed["flops"], timed["latency_1"]).statistic
    shift = (latency_rank - flops_rank).abs()
    devices = " and ".join(sorted(set(timed["device"])))
    text = f"FLOPs and single-image latency on {devices} have a Spearman rank correlation of {rho:.2f} over {len(timed)} models"
    worst = list(shift[shift == shift.max()].index) if shift.max() > 0 else []
    if worst:
        text += "; the largest disagreement" + (f" ({shift.max():g} ranks) is " if len(worst) == 1 else f"s ({shift.max():g} ranks each) are ") + "; ".join(
            f"{name}, {_ordinal(flops_rank[name])} cheapest in FLOPs but {_ordinal(latency_rank[name])} in latency "
            f"({timed.loc[name, 'flops'] / 1e6:,.1f} MFLOPs, {timed.loc[name, 'latency_1']:.2f} ms)" for name in worst)
    if rho < MISPREDICT_RHO or shift.max() >= MISPREDICT_RANKS:
        return text + (". Here FLOPs alone mispredict latency across families, as Canziani et al. (2016) and Bianco et al. (2018) "
                       "found, so the latency front is drawn from measurements.")
    return text + ". Here FLOPs order the measured latencies closely, so the FLOPs and latency fronts agree."


# ----------------------------------------------------------------------------------------------------------------------
# Significance


def _pair(pairs: pd.DataFrame, x: str, y: str) -> pd.Series | None:
    """The test of x against y, in either order, or None."""
    hit = pairs[((pairs["a"] == x) & (pairs["b"] == y)) | ((pairs["a"] == y) & (pairs["b"] == x))]
    return hit.iloc[0] if len(hit) else None


def verdict(pairs: pd.DataFrame, x: str, y: str, alpha: float = ALPHA) -> str:
    """One sentence on x against y from the corrected test alone: '**A** beats **B**' only where it is significant."""
    row = _pair(pairs, x, y)
    if row is None:
        return f"{x} and {y} were not tested against each other (no per-image predictions on the same test images)."
    a, b, acc_a, acc_b, only_a, only_b = row["a"], row["b"], row["acc_a"], row["acc_b"], row["only_a"], row["only_b"]
    if b == (row["better"] if row["significant"] else x):  # the winner first, else the order asked for
        a, b, acc_a, acc_b, only_a, only_b = b, a, acc_b, acc_a, only_b, only_a
    detail = (f"{100 * acc_a:.2f}% against {100 * acc_b:.2f}%; {only_a:,} image{'' if only_a == 1 else 's'} right only for {a} and {only_b:,} only for {b}, "
              f"McNemar {row['test']}, Holm-corrected p = {row['p_holm']:.3g}")
    if row["significant"]:
        return f"**{a}** beats **{b}** on this test set ({detail} < {alpha:g})."
    return f"{a} and {b} are indistinguishable on this test set ({detail} ≥ {alpha:g})."


def neighbour_verdicts(table: pd.DataFrame, pairs: pd.DataFrame, alpha: float = ALPHA) -> list[str]:
    """A sentence per pair of neighbours in the accuracy ranking: does each model differ from the next one down?"""
    ranking = list(table.sort_values("acc", ascending=False).index)
    return [verdict(pairs, a, b, alpha) for a, b in zip(ranking, ranking[1:])]


def top_group(table: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """The most accurate model, then by accuracy those it does not significantly beat in a corrected test (untested pairs are not separated).

    The tests compare seed-0 runs while the ranking is by the mean over seeds, so a model may even beat the leader: it stays in the group.
    """
    ranking = list(table.sort_values("acc", ascending=False).index)
    rows = {name: _pair(pairs, ranking[0], name) for name in ranking[1:]}
    return ranking[:1] + [name for name, row in rows.items() if row is None or not row["significant"] or row["better"] != ranking[0]]


def significance_text(selection: Selection, pairs: pd.DataFrame, alpha: float = ALPHA) -> str:
    """How many pairs were tested, on how many images, and how many differ after Holm's correction."""
    if pairs.empty:
        return (f"{selection.title}: no two models have per-image test predictions on the same images in profile `{selection.profile}` "
                "(records written before predictions were kept, or after a change of the test size), so no pair is tested.")
    exact = int((pairs["test"] == "exact binomial").sum())
    seeded = [run.title for run in selection.runs.values() if len(run.records) > 1]
    seeds = (f" Each test compares the models' seed-0 runs (their notebooks' own); {', '.join(seeded)} also ran further seeds, so the "
             "accuracies quoted here can differ from the leaderboard's means.") if seeded else ""
    flip = dataset_info(selection.dataset).flip
    counts = {run.title: tta_views(run.default["config"].get("tta") or "off", flip) for run in selection.runs.values()}
    views = [f"{title} {n}" for title, n in counts.items() if n > 1]
    seeds += (f" Each model is tested as its recipe predicts, test-time augmentation included ({', '.join(views)} views per image), so a "
              "difference is the recipe's, not the architecture's alone.") if views else ""
    sizes = pairs["images"].value_counts().sort_index()
    images = (f"{int(sizes.index[0]):,} test images" if len(sizes) == 1 else  # pairs on test sets of different sizes: each size named
              "test sets of " + ", ".join(f"{int(n):,} images ({k} pairs)" for n, k in sizes.items()))
    return (f"{selection.title}: {len(pairs)} pairs tested on {images} ({exact} with the exact binomial "
            f"test, fewer than {stats.EXACT_BELOW} discordant images); {int(pairs['significant'].sum())} differ at a family-wise "
            f"{alpha:g} after Holm's correction, the other {int((~pairs['significant']).sum())} are indistinguishable on this test set." + seeds)


CLAIM = re.compile(r"\*\*(?P<winner>[^*]+)\*\* beats \*\*(?P<loser>[^*]+)\*\*")


def unsupported_claims(text: str, pairs: pd.DataFrame) -> list[str]:
    """The 'A beats B' claims of a text that no significant corrected test in `pairs` backs (with that winner), and any unparsed 'beats'."""
    bad = []
    for match in CLAIM.finditer(text):
        row = _pair(pairs, match["winner"], match["loser"])
        if row is None or not row["significant"] or row["better"] != match["winner"]:
            bad.append(match.group())
    if text.count(" beats ") != len(CLAIM.findall(text)):  # a claim in another form cannot be checked: refuse it
        bad.append("a 'beats' that is not of the form **A** beats **B**")
    return bad


def checked(text: str, pairs: pd.DataFrame) -> str:
    """The text, after making sure every 'beats' in it has a significant corrected test behind it."""
    bad = unsupported_claims(text, pairs)
    if bad:
        raise AssertionError(f"claims without a significant corrected test: {bad}")
    return text


# ----------------------------------------------------------------------------------------------------------------------
# Seeds, calibration, classes


def seed_text(table: pd.DataFrame) -> str:
    """How the spread across seeds compares with the gaps between neighbouring models (Bouthillier et al. 2021)."""
    seeds = seed_table(table)
    spread = seeds.dropna(subset=["std across seeds (pp)"])
    if spread.empty:
        return ("No architecture has more than one seed in this profile: the gaps below are single runs, and seed-to-seed variation, which "
                "Bouthillier et al. (2021) show can be as large as the differences being claimed, is not measured here (the runner's "
                "`--seeds` adds it).")
    widest = spread["std across seeds (pp)"].idxmax()
    std = spread.loc[widest, "std across seeds (pp)"]
    pair_spread = np.fmax(seeds["std across seeds (pp)"], seeds["std across seeds (pp)"].shift(-1))  # the larger of a gap's two models' spreads
    all_gaps = seeds["gap to next (pp)"].dropna()
    gaps = all_gaps[pair_spread[all_gaps.index].notna()]
    smaller = int((gaps < pair_spread[gaps.index]).sum())
    unmeasured = len(all_gaps) - len(gaps)
    low, high = spread["seeds"].min(), spread["seeds"].max()
    return (f"{len(spread)} architecture(s) have {low if low == high else f'{low}–{high}'} seeds; the widest spread is "
            f"{widest}'s, a standard deviation of {std:.2f} pp. Of the {len(gaps)} gap(s) between neighbours in the ranking where at least "
            f"one of the two ran several seeds, {smaller} {'is' if smaller == 1 else 'are'} smaller than the larger measured standard deviation of the two models (the only one, "
            "where one of them ran a single seed), so those "
            "neighbours' order could change with the seed alone (Bouthillier et al. 2021)."
            + (f" The other {unmeasured} gap(s) are between models with one seed each: their seed spread is not measured." if unmeasured else "")
            + _single_seed_text(table))


def _single_seed_text(table: pd.DataFrame) -> str:
    """Which architectures ran one seed: those the seed rule leaves at one (named with their training time), and those whose seeds have not run."""
    single = table[table["seeds"] == 1]
    long = pd.Series([not seeded(d, a, t) for d, a, t in zip(single["dataset"], single["arch"], single["own_train_s"])], index=single.index, dtype=bool)
    parts = []
    if long.any():
        named = ", ".join(f"{m} ({single.loc[m, 'own_train_s'] / 60:.1f} min"
                          + (f"; {single.loc[m, 'train_time_s'] / 60:.1f} with its waits for a core" if single.loc[m, "cpu_wait"] >= SHARED_CPU else "")
                          + ")" for m in single.index[long])
        parts.append(f"{named}, {'each of which' if long.sum() > 1 else 'which'} trained for over {SEED_MINUTES} minutes (waits for a core aside), "
                     "so this report runs no further seeds of them")
    if (~long).any():
        parts.append(f"{', '.join(single.index[~long])}, whose further seeds have not run")
    return f" One seed only: {'; '.join(parts)}." if parts else ""


def confusion_text(selection: Selection, shared: pd.DataFrame) -> str:
    """Which confusions every model makes (a share above zero for all), else the most common ones on average, from shared_confusions."""
    every = shared[shared["least share (%)"] > 0]
    if len(every):
        listed = "; ".join(f"{r['true class']} → {r['predicted']} (at least {r['least share (%)']:.1f}% of the {r['true class']} images "
                           f"for every model, {r['mean share (%)']:.1f}% on average)" for _, r in every.iterrows())
        return f"Every one of the {len(selection.runs)} models on {selection.title} makes these confusions: {listed}."
    if shared.empty:
        return f"No model on {selection.title} confuses any class."
    listed = "; ".join(f"{r['true class']} → {r['predicted']} ({r['mean share (%)']:.1f}% on average)" for _, r in shared.iterrows())
    return (f"No confusion is made by all {len(selection.runs)} models on {selection.title} (some predict few classes at all); "
            f"the most common on average: {listed}.")


# ----------------------------------------------------------------------------------------------------------------------
# Critical analysis


def _ratio(table: pd.DataFrame, x: str, y: str, column: str) -> str:
    """'2.1×': y's value of a cost over x's."""
    return f"{table.loc[y, column] / table.loc[x, column]:.1f}×"


def _shared(table: pd.DataFrame, *names: str) -> str:
    """' (VGG19 waited for a core 24% of its training)' for those of the named runs that shared the CPU, else ''."""
    waited = [f"{n} waited for a core {wait_pct(table.loc[n, 'cpu_wait'])}% of its training" for n in names if table.loc[n, "cpu_wait"] >= SHARED_CPU]
    return f" ({'; '.join(waited)})" if waited else ""


def _training_cost(table: pd.DataFrame, x: str, y: str) -> str:
    """'training time 2.1×' between equal training budgets, else the time per image seen and both budgets."""
    seen = table["epochs"] * table["train_images"]
    if seen[x] == seen[y] or seen[[x, y]].isna().any():
        return f"training time {_ratio(table, x, y, 'train_time_s')}{_shared(table, x, y)}"
    per_image = (table.loc[y, "train_time_s"] / seen[y]) / (table.loc[x, "train_time_s"] / seen[x])
    return (f"training time per image seen {per_image:.1f}× (their budgets differ: {int(table.loc[x, 'epochs'])} epoch(s) on "
            f"{int(table.loc[x, 'train_images']):,} images against {int(table.loc[y, 'epochs'])} on {int(table.loc[y, 'train_images']):,})"
            f"{_shared(table, x, y)}")


def _recipe_gap(selection: Selection, x: str, y: str) -> str:
    """'' when the default runs of architectures x and y share one recipe, else a sentence naming the fields in which they differ."""
    a, b = (selection.runs[arch].default["config"] for arch in (x, y))
    differ = [k for k in sorted(training_recipe_fields()) if (k in a or k in b) and a.get(k) != b.get(k)]
    if not differ:
        return ""
    fields = ", ".join(f"{k.replace('_', ' ')} {_setting(a.get(k))} against {_setting(b.get(k))}" for k in differ)
    return f" Their recipes differ too ({fields}: the registry's per-architecture settings), so the step is not the architecture's alone."


def _step(selection: Selection, table: pd.DataFrame, pairs: pd.DataFrame, x: str, y: str, alpha: float) -> str:
    """From architecture x to y: the cost multipliers, the corrected test's verdict, and any difference in their recipes."""
    tx, ty = model_spec(x).title, model_spec(y).title
    return (f"From {tx} to {ty}, parameters change {_ratio(table, tx, ty, 'params')}, FLOPs {_ratio(table, tx, ty, 'flops')} "
            f"and {_training_cost(table, tx, ty)}. " + verdict(pairs, tx, ty, alpha) + _recipe_gap(selection, x, y))


def _depthwise(selection: Selection, table: pd.DataFrame, pairs: pd.DataFrame, alpha: float) -> str:
    """MobileNetV2 against ResNet18: shares of FLOPs, parameters, latency and throughput, then the verdict and any recipe difference."""
    resnet, mobile = model_spec("resnet18").title, model_spec("mobilenet_v2").title
    r, m = table.loc[resnet], table.loc[mobile]
    flops = m["flops"] / r["flops"]
    text = f"{mobile} needs {flops:.0%} of {resnet}'s FLOPs and {m['params'] / r['params']:.0%} of its parameters"
    latency = m["latency_1"] / r["latency_1"]
    if not np.isnan(latency):
        text += (f", and takes {latency:.0%} of its single-image latency on {r['device']}: " +
                 ("depthwise layers do little arithmetic per byte moved, so none of the FLOPs saved is time saved here" if latency >= 1 else
                  "depthwise layers do little arithmetic per byte moved, so the FLOPs saved are not all time saved" if latency > flops else
                  "here the FLOPs saved do show up as time saved"))
    text += f"; it trains at {m['images_per_s'] / r['images_per_s']:.0%} of {resnet}'s training images/s{_shared(table, mobile, resnet)}. "
    return text + verdict(pairs, resnet, mobile, alpha) + _recipe_gap(selection, "resnet18", "mobilenet_v2")


def recipe_text(selection: Selection) -> str:
    """Whether the compared runs share one training recipe (and which), or in which fields their recipes differ, from their configs."""
    configs = [run.default["config"] for run in selection.runs.values()]
    keys = sorted(k for k in training_recipe_fields() if any(k in c for c in configs))
    varying = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    # an option left at its quiet default by every run (the transfer study's, say) is not part of these runs' recipe
    shared = ", ".join(f"{k.replace('_', ' ')} {_setting(configs[0].get(k))}" for k in keys if k not in varying and not quiet_default(k, configs[0].get(k)))
    lr = sorted({(c.get("lr"), c.get("batch_size")) for c in configs}, key=repr)
    rates = f"peak learning rate{'s' if len(lr) > 1 else ''} " + ", ".join(f"{r:g} at batch {b}" for r, b in lr)
    if not varying:
        return f"every architecture here ran one recipe ({shared}; {rates}, scaled from the batch), tuned for none of them."
    return (f"the runs share {shared}; their {rates}; their recipes differ per architecture in {', '.join(v.replace('_', ' ') for v in varying)} "
            "(the registry's per-architecture settings, none of them searched for in these runs).")


def _setting(value: object) -> str:
    """A config value as the text says it: a switch as on or off."""
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def search_text(selection: Selection, studies: list[dict]) -> str:
    """What notebook 45's hyper-parameter searches in the selection's profile found on validation, formatted from their records."""
    here = [r for r in studies if r["profile"] == selection.profile]
    mine = [r for r in here if r["config"]["dataset"] == selection.dataset]
    if not mine:
        elsewhere = sorted({dataset_info(r["config"]["dataset"]).title for r in here})
        return (f"Notebook 45's searches in profile `{selection.profile}` ran on {', '.join(elsewhere)} only." if elsewhere
                else f"No hyper-parameter search (notebook 45) has a record in profile `{selection.profile}`.")
    lines = []
    for r in sorted(mine, key=lambda r: r["name"]):
        c, m = r["config"], r["metrics"]
        sizes = c["sizes"]
        found = ("no searched setting scored above the default recipe, which was kept" if m["best_trial"] == 0 else
                 f"its best setting scored {m['best_val_acc']:.2%} on validation against the default recipe's {m['default_val_acc']:.2%}")
        lines.append(f"{'Notebook' if not lines else 'notebook'} 45 searched {model_spec(c['arch']).title} ({m['trials']} trials, {m['pruned']} stopped early by the median "
                     f"rule, each {sizes['epochs']} epochs on {sizes['train_size']:,} training images, scored on {sizes['val_size']:,} "
                     f"validation images): {found}")
    return ("; ".join(lines) + ". A gain on validation at the search's small sizes is a lead, not a result: notebook 45 tests it once "
            "on the test set against the default recipe.")


def critical_analysis(selection: Selection, table: pd.DataFrame, pairs: pd.DataFrame, alpha: float = ALPHA,
                      studies: list[dict] = ()) -> str:
    """The critical analysis of one dataset, every number formatted from its records and tests; 'beats' only where a test says so.

    studies: notebook 45's search records (compare.study_records()), summarised under the seeds' future work.
    """
    if table.empty:
        return f"No runs of {selection.title} to analyse."
    have = set(selection.runs)
    t = {a: model_spec(a).title for a in REGISTRY}
    parts = []
    depth = [_step(selection, table, pairs, x, y, alpha) for x, y in (("vgg16", "vgg19"), ("resnet18", "resnet50"), ("resnet50", "resnet101"))
             if {x, y} <= have]
    if depth:
        parts.append("**What depth bought.** " + " ".join(depth))
    if {"vgg16", "resnet18"} <= have:
        parts.append("**Residual connections** (a plain stack against a residual one). " + _step(selection, table, pairs, "vgg16", "resnet18", alpha))
    inception = [_step(selection, table, pairs, "vgg16", x, alpha) for x in ("googlenet", "minigooglenet") if {"vgg16", x} <= have]
    if inception:
        parts.append("**Inception modules.** " + " ".join(inception))
    if {"resnet18", "mobilenet_v2"} <= have:
        parts.append("**Depthwise convolutions.** " + _depthwise(selection, table, pairs, alpha))
    epochs = sorted({int(e) for e in table["epochs"].dropna()})
    images = sorted({int(n) for n in table["train_images"].dropna()})
    budget = (f"{_span(epochs)} epoch(s) on {_span(images)} training images"
              if epochs and images else "the profile's budget")
    group = top_group(table, pairs)
    ranks = table["acc"].rank(method="min", ascending=False)
    tied = table["acc"].duplicated(keep=False)
    deep = [f"{name} ranks {'joint ' if tied[name] else ''}{_ordinal(ranks[name])}{' (in that group)' if name in group else ''}"
            for name in (t["resnet18"], t["resnet50"], t["resnet101"], t["vgg19"]) if name in table.index]
    others = group[1:]
    parts.append(
        f"**What the budget changes.** In profile `{selection.profile}` ({budget}) the most accurate model on this test set is {group[0]}; "
        + (f"the corrected pairwise tests cannot tell {', '.join(others)} from it, so the top group is {len(group)} models. " if others
           else "the corrected pairwise tests separate every other model from it. ")
        + f"By mean test accuracy, among the {len(table)} models, {', '.join(deep) or 'no deep network was run'}. With full schedules the literature "
        "ranks the deeper ResNets above ResNet18 and residual networks above VGG (He et al. 2016); a short budget can favour networks that "
        "learn fast per image seen (section 3's curves show how fast each one learned here), so a ranking at this budget is a statement "
        "about this budget, not about the architectures' ceilings.")
    parts.append("**The seed projects' future work.** Hyper-parameter optimisation: " + recipe_text(selection) + " " + search_text(selection, list(studies))
                 + " A per-architecture search could reorder networks whose gaps are not significant. Additional datasets: the same code "
                 "runs MNIST, Fashion-MNIST and CIFAR-10; how far a ranking carries from one to another is measured below.")
    return checked("\n\n".join(parts), pairs)


def transfer_text(summaries: dict[str, pd.DataFrame], selections: dict[str, Selection]) -> str:
    """Kendall's tau between the accuracy rankings of every two datasets, over the architectures both compared."""
    lines = []
    for a, b in itertools.combinations([d for d, t in summaries.items() if len(t) >= 3], 2):
        common = summaries[a].index.intersection(summaries[b].index)
        if len(common) < 3:
            continue
        tau = scipy_stats.kendalltau(summaries[a].loc[common, "acc"], summaries[b].loc[common, "acc"]).statistic
        lines.append(f"{selections[a].title} (`{selections[a].profile}`) against {selections[b].title} (`{selections[b].profile}`): "
                     f"Kendall's tau {tau:.2f} over {len(common)} architectures")
    if not lines:
        return "Too few architectures compared on two datasets to relate their rankings."
    return "Rank agreement of test accuracy between datasets (1: the same order, 0: unrelated): " + "; ".join(lines) + "."
