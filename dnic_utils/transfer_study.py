"""Notebook 40's study: transfer-learning claims measured with the one run path, read back from the run records.

Part A: ImageNet → CIFAR-10 with EfficientNet-Lite0 (frozen, last stage, everything, from scratch; input size; schedule;
label budget). Part B: Yosinski et al. (2014) on two CIFAR-10 class splits with the fast net cut at each stage boundary.
Part C: the fast net pretrained on CIFAR-10, then trained on Fashion-MNIST and MNIST with few labels per class.
Every arm is one `experiment.run` of a RunConfig with transfer parameters; every number shown comes from its record.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from scipy.stats import norm

from .config import PROFILES, RunConfig
from .data import dataset_info, load_raw
from .data.subsets import CLASS_SPLITS
from .errors import DnicError
from .experiment import run
from .models import build_model
from .records import git_commit, read_record
from .settings import checkpoint_dir
from .stats import ALPHA, holm
from .transfer import SOURCES, load_pretrained, max_cut
from .transfer.apply import IMAGENET

LITE0, FAST = "efficientnet_lite0", "fastnet"
TARGET_SEED_OFFSET = 1000  # transfer runs' seeds: their new layers start from another draw than the source run's
FROZEN, LAST, ALL, ALL_LOW_COPIED, SCRATCH = ("frozen features, linear head", "last stage fine-tuned", "everything fine-tuned",
                                              "everything fine-tuned, copied stages at lr × 0.1", "from scratch")
YOSINSKI = {"BnB": ("B", True), "BnB+": ("B", False), "AnB": ("A", True), "AnB+": ("A", False)}  # source half, frozen


@dataclass(frozen=True)
class Sizes:
    """How big the study's runs are in one profile: the profiles cut sizes and seeds, never arms."""

    a_train: int  # CIFAR-10 training images of Part A's treatment, size and schedule arms
    a_pool: int | None  # the training images that "100% of the labels" means (None: all)
    a_size: int  # input size (px) of the treatment and schedule arms
    a_sizes: tuple[int, ...]  # input sizes of the upsampling arms
    a_epochs: int
    b_train: int | None  # CIFAR-10 training images before a half is taken (None: all)
    b_epochs: int
    seeds: tuple[int, ...]  # Part B's seeds
    c_budgets: tuple[int, ...]  # labels per class
    c_images: int  # images each Part C run sees in all: its epochs are this over its labels, at least 1
    val: int
    test: int | None
    batch: int
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)


SIZES: dict[str, Sizes] = {
    "smoke": Sizes(a_train=32, a_pool=100, a_size=32, a_sizes=(32, 40, 48), a_epochs=1, b_train=128, b_epochs=1, seeds=(0,),
                   c_budgets=(1, 2, 4), c_images=20, val=64, test=50, batch=16),
    "quick": Sizes(a_train=200, a_pool=500, a_size=64, a_sizes=(32, 64, 96), a_epochs=1, b_train=300, b_epochs=1, seeds=(0,),
                   c_budgets=(5, 10, 30), c_images=300, val=128, test=256, batch=32),
    # budget: sized from throughputs measured on a 2-core fp32 AMD EPYC (fast net ~100-150 training images/s, Lite0 at 64 px ~100
    # fine-tuning and ~300 frozen) to about 75 min there; a 2-core bf16 CPU should be faster
    "budget": Sizes(a_train=3000, a_pool=None, a_size=64, a_sizes=(32, 64, 128), a_epochs=2, b_train=4000, b_epochs=2, seeds=(0, 1),
                    c_budgets=(10, 100, 1000), c_images=4000, val=1000, test=2000, batch=128),
    "full": Sizes(a_train=45000, a_pool=None, a_size=128, a_sizes=(32, 64, 128), a_epochs=10, b_train=None, b_epochs=20, seeds=(0, 1, 2),
                  c_budgets=(10, 100, 1000), c_images=30000, val=5000, test=None, batch=256),
}
STUDY_PARAMS = {"tta": "off"}  # every arm tests on the plain images: test-time augmentation is no treatment here, and it costs 6 passes


@dataclass(frozen=True)
class Arm:
    """One run of the study: its part, the labels its tables group by, and the run's parameters."""

    part: str
    labels: dict
    arch: str
    dataset: str
    params: dict = field(default_factory=dict)

    def config(self, profile: str) -> RunConfig:
        """The arm's checked run configuration in a profile (a concrete one: the notebook has resolved it)."""
        return RunConfig(self.arch, self.dataset, profile, **{**STUDY_PARAMS, **self.params})


def sizes_table(profile: str) -> pd.DataFrame:
    """What this profile's study runs: the sizes and seeds of each part (the arms are the same in every profile)."""
    s = SIZES[profile]
    every = "all" if s.a_pool is None else f"{s.a_pool:,}"
    rows = {
        "A · training images (treatments, sizes, schedules)": f"{s.a_train:,}",
        "A · input sizes (px)": ", ".join(map(str, s.a_sizes)) + f" (treatments at {s.a_size})",
        "A · label budgets": ", ".join(f"{f:.0%}" for f in s.fractions) + f" of {every} images",
        "A · epochs": s.a_epochs,
        "B · training images before the halves": "all" if s.b_train is None else f"{s.b_train:,}",
        "B · epochs": s.b_epochs,
        "B · seeds": ", ".join(map(str, s.seeds)),
        "C · labels per class": ", ".join(f"{k:,}" for k in s.c_budgets),
        "C · images seen per run": f"{s.c_images:,}",
        "validation / test images": f"{s.val:,} / {'all' if s.test is None else f'{s.test:,}'}",
        "batch": s.batch,
    }
    return pd.Series({k: str(v) for k, v in rows.items()}, name=profile).to_frame()


def cuts_text(profile: str, published: str = "budget") -> str:
    """What this profile cuts against the published one: part B's seeds, and the training images of each part."""
    s, p = SIZES[profile], SIZES[published]
    if PROFILES[profile].rank >= PROFILES[published].rank:
        b = "all" if s.b_train is None else f"{s.b_train:,}"
        return (f"`{profile}` runs part B with {len(s.seeds)} seeds on halves of {b} training images, and part A's treatments on "
                f"{s.a_train:,} training images (its label arms up to all of them): sizes cut to fit the profile's time, no arm.")
    return (f"`{profile}` runs part B with {len(s.seeds)} seed(s) where the published `{published}` runs {len(p.seeds)}, and fewer images "
            f"everywhere (part A {s.a_train:,} training images against {p.a_train:,}): its numbers check the pipeline, not the claims.")


def imagenet_sources() -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Which ImageNet sources can be had here (each loaded once; after one failed download the rest are not tried), and those that can."""
    rows, usable, offline = [], [], False
    for name, source in SOURCES.items():
        if offline and not source.offline:
            rows.append({"source": source.title, "weights": source.weights, "status": "not tried: the download above failed"})
            continue
        try:
            sha = load_pretrained(name, 10).provenance["sha256"]
        except DnicError as err:
            offline = offline or "cannot be had" in err.problem
            rows.append({"source": source.title, "weights": source.weights, "status": f"{err.problem} Fix: {err.fix}"})
            continue
        usable.append(name)
        rows.append({"source": source.title, "weights": source.weights, "status": f"loaded (SHA-256 {sha[:12]}…)"})
    return pd.DataFrame(rows).set_index("source"), tuple(n for n in usable if n != LITE0)


def depth(arch: str) -> int:
    """The deepest cut of an architecture: its stages less the head."""
    return max_cut(build_model(arch, 10, 3, 32))


def part_a(profile: str, online: tuple[str, ...] = ()) -> list[Arm]:
    """Part A's arms: ImageNet → CIFAR-10 with EfficientNet-Lite0, and from scratch.

    Treatments, input sizes, schedules and label budgets; for each torchvision source whose weights could be had (`online`),
    its frozen features with a linear head too.
    """
    s = SIZES[profile]
    main = {"train_size": s.a_train, "val_size": s.val, "test_size": s.test, "epochs": s.a_epochs, "batch_size": s.batch, "image_size": s.a_size}
    imagenet, n = {"source": IMAGENET}, depth(LITE0)
    arms = [Arm("A", {"arm": "treatment", "treatment": name}, LITE0, "cifar10", {**main, **extra}) for name, extra in (
        (FROZEN, {**imagenet, "freeze": n}),
        (LAST, {**imagenet, "freeze": n - 1}),
        (ALL, imagenet),
        (ALL_LOW_COPIED, {**imagenet, "copied_lr": 0.1}),
        (SCRATCH, {}),
    )]
    arms += [Arm("A", {"arm": "input size", "size": px}, LITE0, "cifar10", {**main, **imagenet, "freeze": n, "image_size": px}) for px in s.a_sizes]
    low = Arm("A", {}, LITE0, "cifar10", main).config(profile).lr / 10  # a tenth of the one-cycle peak that the batch size derives
    arms += [Arm("A", {"arm": "schedule", "schedule": name}, LITE0, "cifar10", {**main, **imagenet, **extra})
             for name, extra in (("one-cycle", {}), ("constant, low", {"schedule": "constant", "lr": low}))]
    arms += [Arm("A", {"arm": "treatment", "treatment": f"{SOURCES[name].title}: {FROZEN}"}, name, "cifar10",
                 {**main, **imagenet, "freeze": depth(name)}) for name in online]
    pool = s.a_pool or dataset_info("cifar10").sizes[0] - s.val
    for fraction in s.fractions:
        size = max(10, round(fraction * pool))
        arms.append(Arm("A", {"arm": "labels", "fraction": fraction, "images": size}, LITE0, "cifar10",
                        {**main, **imagenet, "freeze": n, "train_size": size, "batch_size": min(s.batch, size)}))
    return arms


def part_b(profile: str, splits: tuple[str, ...] = CLASS_SPLITS) -> list[Arm]:
    """Yosinski et al.'s treatments on class splits: baseA and baseB, then BnB, BnB+, AnB and AnB+ at every cut, per seed."""
    s = SIZES[profile]
    base = {"train_size": s.b_train, "val_size": s.val, "test_size": s.test, "epochs": s.b_epochs, "batch_size": s.batch}
    arms = []
    for split in splits:
        for seed in s.seeds:
            halves = {h: Arm("B", {"split": split, "seed": seed, "treatment": f"base{h}", "n": 0}, FAST, "cifar10",
                             {**base, "classes": f"{split}:{h}", "seed": seed}) for h in "AB"}
            arms += halves.values()
            names = {h: arm.config(profile).run_name for h, arm in halves.items()}
            for n in range(1, depth(FAST) + 1):
                for treatment, (src, frozen) in YOSINSKI.items():
                    params = {**halves["B"].params, "seed": seed + TARGET_SEED_OFFSET, "source": names[src], "cut": n, "freeze": n if frozen else 0}
                    arms.append(Arm("B", {"split": split, "seed": seed, "treatment": treatment, "n": n}, FAST, "cifar10", params))
    return arms


def part_c(profile: str) -> list[Arm]:
    """CIFAR-10's fast-net run, then Fashion-MNIST and MNIST (32×32 RGB) with k labels per class: from scratch, frozen, fine-tuned."""
    s = SIZES[profile]
    # the registry's own run of the profile (its model notebook's, with the recipe's test-time augmentation), reused when there
    source = Arm("C", {"treatment": "source"}, FAST, "cifar10", {"tta": None})
    arms = [source]
    for dataset in ("fashion_mnist", "mnist"):
        for k in s.c_budgets:
            base = {"labels_per_class": k, "grey_as_rgb": True, "val_size": s.val, "test_size": s.test, "batch_size": min(s.batch, 10 * k),
                    "epochs": max(1, math.ceil(s.c_images / (10 * k)))}
            for treatment, extra in ((SCRATCH, {}), ("frozen", {"source": source.config(profile).run_name, "freeze": depth(FAST)}),
                                     ("fine-tuned", {"source": source.config(profile).run_name})):
                arms.append(Arm("C", {"dataset": dataset, "labels per class": k, "treatment": treatment}, FAST, dataset, {**base, **extra}))
    return arms


def _row(arm: Arm, record: dict) -> dict:
    """One table row: the arm's labels and its record's numbers and provenance."""
    transfer = record.get("transfer") or {}
    weights = transfer.get("weights", {})
    m = record["metrics"]
    return {"part": arm.part, **arm.labels, "test_acc": m["test_acc"], "best_val_acc": m["best_val_acc"], "train_time_s": m["train_time_s"],
            "images_per_s": m["images_per_s"], "test_images": record["data"]["sizes"]["test"], "train_images": record["data"]["sizes"]["train"],
            "source": weights.get("source"), "source_sha256": weights.get("sha256"), "cut": transfer.get("cut", 0),
            "frozen_stages": transfer.get("frozen_stages", 0), "run": record["name"], "created": record.get("created", "")[:16].replace("T", " "),
            "run_time_s": record.get("wall_time_s")}


def run_arms(arms: list[Arm], profile: str, data_dir: str | None = None, reuse: Callable[[RunConfig], bool] = lambda cfg: False) -> pd.DataFrame:
    """Run every arm once (arms with the same configuration share a run), in order, and tabulate their records.

    An arm is taken from its record instead when reuse(cfg) says so, or when this very code (a clean commit) made the record
    with this configuration from this copy of the data: a study stopped part-way (a killed kernel, the end of a session) goes
    on where it stopped.
    """
    records: dict[str, dict] = {}
    reused: dict[str, bool] = {}
    rows = []
    for arm in arms:
        cfg = arm.config(profile)
        if cfg.run_name not in records:
            kept = read_record(profile, cfg.run_name) if reuse(cfg) or made_by_this_code(cfg, data_dir) else None
            records[cfg.run_name] = kept or run(cfg, data_dir, latency=False).record  # the study's tables show no latency
            reused[cfg.run_name] = kept is not None
        rows.append({**_row(arm, records[cfg.run_name]), "reused": reused[cfg.run_name]})
    return pd.DataFrame(rows)


def made_by_this_code(cfg: RunConfig, data_dir: str | None = None) -> bool:
    """True when the run's record comes from this commit (no uncommitted code changes), this configuration and this data's checksum."""
    record, commit = read_record(cfg.profile, cfg.run_name), git_commit()
    return (record is not None and commit is not None and not commit.endswith("-dirty") and record.get("git_commit") == commit
            and record.get("config") == cfg.to_dict()
            and record.get("data", {}).get("sha256") == load_raw(cfg.dataset, data_dir).source["sha256"])  # read last: it loads the data


def trained_here(cfg: RunConfig) -> bool:
    """True when the run has a record and its selected weights in this project: the registry's runs are reused, not retrained."""
    return read_record(cfg.profile, cfg.run_name) is not None and (checkpoint_dir(cfg.profile, cfg.run_name) / "best.pt").is_file()


def readable(table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """A part's runs for reading: their labels, test accuracy (%), training images and training time."""
    out = table[labels + ["test_acc", "train_images", "train_time_s"]].copy()
    out["test_acc"] = (100 * out["test_acc"]).round(2)
    out["train_time_s"] = out["train_time_s"].round(1)
    return out.rename(columns={"test_acc": "test accuracy (%)", "train_images": "training images", "train_time_s": "training time (s)"})


def part_b_table(table: pd.DataFrame) -> pd.DataFrame:
    """Part B's mean test accuracy (%) over seeds: a row per split and cut, a column per treatment."""
    means = part_b_means(table)
    wide = means.pivot_table(index=["split", "n"], columns="treatment", values="acc")
    return (100 * wide[[c for c in ("baseB", *YOSINSKI, "baseA") if c in wide]]).round(2)


def standard_error(acc: float, n: int) -> float:
    """The binomial standard error of an accuracy measured on n test images."""
    return math.sqrt(max(acc * (1 - acc), 1e-12) / max(n, 1))


@dataclass(frozen=True)
class Claim:
    """A claimed positive difference of test accuracies, its standard error, and the sentence that gives the numbers."""

    claim: str
    against: str  # what a significant negative difference means
    diff: float
    se: float
    numbers: str


def verdicts(claims: list[Claim], alpha: float = ALPHA) -> list[str]:
    """Each claim's line, led by its verdict: a two-sided z-test of its difference, Holm-corrected over the claims read together."""
    p_values = [2 * norm.sf(abs(c.diff) / c.se) if c.se > 0 else float(c.diff == 0) for c in claims]
    lines = []
    for c, p in zip(claims, holm(p_values)):
        if p < alpha:
            head = f"**{c.claim} holds**" if c.diff > 0 else f"**{c.claim} does not hold**: {c.against}"
        else:
            head = f"**{c.claim} is not resolved** at this size (Holm-corrected p = {p:.2f}, not below α = {alpha:g})"
        lines.append(f"- {head}: {c.numbers}")
    return lines


def pts(x: float) -> str:
    """A difference of accuracies in percentage points, signed."""
    return f"{100 * x:+.1f} points"


def pct(x: float) -> str:
    """An accuracy in percent."""
    return f"{100 * x:.1f}%"


def _acc(table: pd.DataFrame, **where: object) -> pd.Series:
    """The test accuracy and test-set size of the one row matching all the labels given."""
    rows = table
    for key, value in where.items():
        rows = rows[rows[key] == value]
    return rows.iloc[0]


def part_a_claims(table: pd.DataFrame, alpha: float = ALPHA) -> str:
    """Whether seed 003's three claims hold here: frozen far worse than trained; upsampling helps; a low constant learning rate helps."""
    frozen, tuned = _acc(table, arm="treatment", treatment=FROZEN), _acc(table, arm="treatment", treatment=ALL)
    scratch = _acc(table, arm="treatment", treatment=SCRATCH)
    sizes = table[table["arm"] == "input size"].sort_values("size")
    small, large = sizes.iloc[0], sizes.iloc[-1]
    one, low = _acc(table, arm="schedule", schedule="one-cycle"), _acc(table, arm="schedule", schedule="constant, low")

    def se(a: pd.Series, b: pd.Series) -> float:
        """The standard error of the difference of two single runs' accuracies (each on its own test images' binomial error)."""
        return math.hypot(standard_error(a.test_acc, a.test_images), standard_error(b.test_acc, b.test_images))

    gap = tuned.test_acc - frozen.test_acc
    # The gap's size against the 5 points that "far" is taken to mean; whether the gap is real at all is the verdict's to say.
    far = "; 5 points or more, the size *far* asks for" if gap >= 0.05 else "; under the 5 points *far* asks for"
    claims = [
        Claim("Frozen is far worse than trained", "frozen features scored higher", gap, se(tuned, frozen),
              f"fine-tuning everything scored {pct(tuned.test_acc)} against {pct(frozen.test_acc)} for the frozen features with a linear "
              f"head ({pts(gap)}{far if gap > 0 else ''}). From scratch, the same net and budget reached {pct(scratch.test_acc)}."),
        Claim("Upsampling helps", "the smaller input scored higher", large.test_acc - small.test_acc, se(large, small),
              "the frozen features with a linear head scored " + ", ".join(f"{pct(r.test_acc)} at {int(r['size'])} px" for _, r in sizes.iterrows())
              + f" ({pts(large.test_acc - small.test_acc)} from {int(small['size'])} to {int(large['size'])} px)."),
        Claim("A low constant learning rate helps", "one-cycle scored higher", low.test_acc - one.test_acc, se(low, one),
              f"fine-tuning everything at a constant low rate scored {pct(low.test_acc)} against {pct(one.test_acc)} with the one-cycle "
              f"schedule ({pts(low.test_acc - one.test_acc)})."),
    ]
    return "\n".join(verdicts(claims, alpha))


def part_b_means(table: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy per split, treatment and cut: the mean over seeds, the seeds run and the mean's standard error.

    The seeds share one test set, so its binomial error does not shrink with them; the seed-to-seed variance (measured where
    two or more seeds ran) does, by their number.
    """
    groups = table.groupby(["split", "treatment", "n"])
    out = groups.agg(acc=("test_acc", "mean"), spread=("test_acc", "var"), seeds=("seed", "nunique"),
                     test_images=("test_images", "first")).reset_index()
    out["se"] = [math.sqrt(standard_error(a, n) ** 2 + (0.0 if k < 2 else v / k))
                 for a, v, n, k in zip(out["acc"], out["spread"], out["test_images"], out["seeds"])]
    return out.drop(columns="spread")


def part_b_findings(table: pd.DataFrame, alpha: float = ALPHA) -> str:
    """Which of Yosinski et al.'s findings hold here, split by split, with the numbers; Holm-corrected over all of them."""
    means = part_b_means(table)

    def cuts(split: str, treatment: str) -> pd.DataFrame:
        """The means over seeds of one treatment, indexed by the cut n (columns acc, se, seeds)."""
        return means[(means["split"] == split) & (means["treatment"] == treatment)].set_index("n")

    heads, claims, drops = {}, [], {}
    for split in ("random", "vehicles"):
        base = cuts(split, "baseB").loc[0]
        bnb, anb, anb_plus = cuts(split, "BnB"), cuts(split, "AnB"), cuts(split, "AnB+")
        deepest = int(anb.index.max())
        middle = bnb.loc[[n for n in bnb.index if 1 < n < deepest]] if deepest > 2 else bnb
        low = middle.loc[middle["acc"].idxmin()]
        first, last = anb.loc[1], anb.loc[deepest]
        gain = float((anb_plus["acc"] - base.acc).mean())
        drops[split] = (base.acc - last.acc, math.hypot(base.se, last.se))
        label = "Random 5/5 split" if split == "random" else "Vehicles (A) against animals (B)"
        heads[len(claims)] = f"**{label}** (baseB {pct(base.acc)}, mean of {int(base.seeds)} seed(s)):"
        claims += [
            Claim("Frozen BnB dips at middle layers", "frozen BnB is above baseB there", base.acc - low.acc, math.hypot(base.se, low.se),
                  f"at its lowest middle cut (n = {int(low.name)}) BnB scored {pct(low.acc)}, {pts(low.acc - base.acc)} from baseB."),
            Claim("Frozen AnB falls with n", "AnB rises with n", first.acc - last.acc, math.hypot(first.se, last.se),
                  f"AnB scored {pct(first.acc)} at n = 1 and {pct(last.acc)} at n = {deepest} ({pts(last.acc - first.acc)})."),
            # the cuts' errors are taken as fully correlated (one test set): the mean's error is at most their mean
            Claim("Fine-tuned AnB+ beats baseB", "AnB+ is below baseB", gain, math.hypot(float(anb_plus["se"].mean()), base.se),
                  f"on average over the cuts AnB+ was {pts(gain)} from baseB (Yosinski et al.: about +2 points on ImageNet)."),
        ]
    (vehicles, se_v), (random, se_r) = drops["vehicles"], drops["random"]
    claims.append(Claim("The dissimilar split hurts far more", "the random split lost more", vehicles - random, math.hypot(se_v, se_r),
                        f"with every feature stage frozen, AnB's accuracy against baseB changed by {pts(-vehicles)} on the "
                        f"vehicles/animals split and by {pts(-random)} on the random split."))
    lines = []
    for k, line in enumerate(verdicts(claims, alpha)):
        lines += [heads[k], line] if k in heads else [line]
    return "\n".join(lines)


NEAR_CHANCE = 0.15  # a from-scratch run this close to chance did not train, and is said so beside the gains measured against it


def part_c_summary(table: pd.DataFrame) -> str:
    """Per dataset, what transfer from CIFAR-10 gave against training from scratch, at the smallest and the largest label budget."""
    rows = table[table["treatment"] != "source"]
    lines = []
    for dataset, part in rows.groupby("dataset", sort=False):
        accs = part.pivot_table(index="labels per class", columns="treatment", values="test_acc")
        lo, hi = int(accs.index.min()), int(accs.index.max())
        title = dataset_info(dataset).title
        lines.append(
            f"- **{title}**: with {lo:,} labels per class, fine-tuning the CIFAR-10 net scored {pct(accs.loc[lo, 'fine-tuned'])}, its frozen "
            f"features {pct(accs.loc[lo, 'frozen'])} and training from scratch {pct(accs.loc[lo, SCRATCH])}; with {hi:,} per class "
            f"{pct(accs.loc[hi, 'fine-tuned'])}, {pct(accs.loc[hi, 'frozen'])} and {pct(accs.loc[hi, SCRATCH])}. Fine-tuned minus scratch: "
            f"{pts(accs.loc[lo, 'fine-tuned'] - accs.loc[lo, SCRATCH])} and {pts(accs.loc[hi, 'fine-tuned'] - accs.loc[hi, SCRATCH])} "
            "(one run each, not tested).")
        chance = 1 / len(dataset_info(dataset).classes)
        stuck = [(k, acc) for k, acc in accs[SCRATCH].items() if acc < chance + NEAR_CHANCE]
        if stuck:
            listed = ", ".join(f"{pct(acc)} with {int(k):,}" for k, acc in stuck)
            lines.append(f"  From scratch, the recipe stayed within {100 * NEAR_CHANCE:.0f} points of chance ({pct(chance)}) on {title} at "
                         f"some budgets ({listed} labels per class): it barely trained there, so the gain of fine-tuning over those runs "
                         "overstates what transfer buys against a from-scratch recipe that works.")
    return "\n".join(lines)


def provenance_table(*tables: pd.DataFrame) -> pd.DataFrame:
    """Each run's provenance: where its weights came from, what was trained, and when.

    Source weights (name and SHA-256 prefix), cut, frozen stages, training images, when it ran, how long, and whether this
    execution reused its record.
    """
    table = pd.concat(tables, ignore_index=True)
    out = table[["part", "run", "source", "source_sha256", "cut", "frozen_stages", "train_images", "created", "run_time_s", "reused"]]
    out = out.drop_duplicates("run").copy()
    out["run_time_s"] = out["run_time_s"].map(lambda t: f"{t:,.0f}" if pd.notna(t) else "—")
    out["source_sha256"] = out["source_sha256"].map(lambda h: f"{h[:12]}…" if isinstance(h, str) else "")
    out["source"] = out["source"].fillna("(random weights)")
    return out.set_index("run")


def timing_text(timings: dict[str, float], profile: str) -> str:
    """How long each part took in this execution of the notebook."""
    parts = ", ".join(f"part {part} {seconds / 60:.1f} min" for part, seconds in timings.items())
    return (f"In profile `{profile}` this execution of the study took {sum(timings.values()) / 60:.1f} min: {parts} (training, evaluation "
            "and records). A run whose record it reused costs only its reading here; its own time is in the provenance table above.")
