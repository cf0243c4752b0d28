"""The published profile's seed rule: which architectures get further seeds, for the runner that trains them and the comparison that reports them."""

from __future__ import annotations

PUBLISHED_SEEDS = (0, 1, 2)  # the default run's seed, then the further ones
SEED_MINUTES = 15  # architectures whose default run trained for at most this long (less its waits for a core) get the further seeds
ALWAYS_SEEDED = {("cifar10", "resnet18"), ("cifar10", "vgg16")}  # and these, however long they take


def own_time(record: dict) -> float:
    """A run's training time less the share its threads waited for a core (other work's share of a shared CPU): the leaderboard's training time, unshared."""
    m = record["metrics"]
    return m["train_time_s"] * (1.0 - (m.get("train_cpu_wait") or 0.0))


def seeded(dataset: str, arch: str, seconds: float) -> bool:
    """Whether the published profile runs further seeds of an architecture whose default run trained for `seconds` of its own."""
    return (dataset, arch) in ALWAYS_SEEDED or seconds <= 60 * SEED_MINUTES
