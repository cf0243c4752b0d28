"""The run configuration: every parameter declared once, checked, filled in from the profile, and named by its variant."""

from __future__ import annotations

import ast
import dataclasses
import json
import re

import pytest
import torch

from conftest import REPO_ROOT
from dnic_utils import report
from dnic_utils.config import (PARAMETERS, PROFILES, RunConfig, field_default, from_parameters, make_config, quiet_default, recipe_fields, resolve_profile,
                                training_recipe_fields)
from dnic_utils.errors import DnicError
from dnic_utils.models import REGISTRY, model_spec


@pytest.fixture(autouse=True)
def explicit_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' DNIC_PROFILE=smoke would override the profiles these tests name; tests that need it set it again."""
    monkeypatch.delenv("DNIC_PROFILE", raising=False)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"epochs": 0}, "`epochs`"),
    ({"epochs": 2.5}, "`epochs`"),
    ({"batch_size": -1}, "`batch_size`"),
    ({"optimizer": "adam"}, "optimizer 'adam'"),
    ({"schedule": "step"}, "schedule 'step'"),
    ({"amp": "fp8"}, "amp 'fp8'"),
    ({"lr": 0}, "`lr`"),
    ({"lr": -0.1}, "`lr`"),
    ({"lr": True}, "`lr`"),  # a bool is no learning rate, though Python counts it as 1
    ({"seed": -1}, "`seed`"),
    ({"label_smoothing": 1.0}, "`label_smoothing`"),
    ({"weight_decay": -1e-4}, "`weight_decay`"),
    ({"momentum": 0}, "`momentum`"),  # Nesterov needs some momentum
    ({"momentum": 1.0}, "`momentum`"),
    ({"lr_per_64": 0}, "`lr_per_64`"),
    ({"bias_decay": "yes"}, "`bias_decay`"),
])
def test_make_config_rejects_bad_parameters(kwargs: dict, fragment: str) -> None:
    with pytest.raises(DnicError) as err:
        make_config("lenet5", "mnist", profile="smoke", **kwargs)
    assert fragment in str(err.value) and "Fix:" in str(err.value)


def test_make_config_rejects_unknown_names() -> None:
    for args, fragment in ((("alexnet", "mnist"), "alexnet"), (("lenet5", "svhn"), "svhn"), ((["lenet5"], "mnist"), "['lenet5']"),
                           (("lenet5", ["mnist"]), "['mnist']")):  # a list, as a papermill parameter may be, is no name
        with pytest.raises(DnicError) as err:
            make_config(*args, profile="smoke")
        assert fragment in str(err.value) and "Fix:" in str(err.value)


def test_unknown_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DNIC_PROFILE", raising=False)
    with pytest.raises(DnicError) as err:
        make_config("lenet5", "mnist", profile="huge")
    message = str(err.value)
    assert "'huge'" in message and "Fix:" in message
    assert all(name in message for name in PROFILES)
    monkeypatch.setenv("DNIC_PROFILE", "huge")
    with pytest.raises(DnicError):
        make_config("lenet5", "mnist", profile="smoke")


def test_dnic_profile_overrides_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNIC_PROFILE", "quick")
    cfg = make_config("resnet18", "cifar10", profile="smoke")
    assert cfg.profile == "quick"
    quick = PROFILES["quick"]
    assert (cfg.epochs, cfg.batch_size, cfg.train_size, cfg.val_size, cfg.test_size, cfg.patience) == (
        quick.epochs, quick.batch_size, quick.train_size, quick.val_size, quick.test_size, quick.patience)
    monkeypatch.delenv("DNIC_PROFILE")
    assert make_config("resnet18", "cifar10", profile="smoke").profile == "smoke"


def test_auto_profile_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DNIC_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_profile("auto").name == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_profile("auto").name == "full"


def test_make_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNIC_PROFILE", "quick")
    lenet = make_config("lenet5", "mnist")
    resnet = make_config("resnet18", "mnist")
    assert lenet.epochs == PROFILES["quick"].light_epochs and resnet.epochs == PROFILES["quick"].epochs
    heavy = make_config("resnet101", "mnist")
    assert resnet.train_size == PROFILES["quick"].train_size and heavy.train_size == PROFILES["quick"].heavy_train_size
    assert heavy.train_size < resnet.train_size and heavy.epochs == resnet.epochs
    assert lenet.lr == 0.05 and make_config("lenet5", "mnist", optimizer="adamw").lr == 3e-3
    assert make_config("lenet5", "mnist", batch_size=256).lr == pytest.approx(0.2)  # linear scaling with the batch
    assert make_config("lenet5", "mnist", batch_size=256, optimizer="adamw").lr == 3e-3
    assert make_config("resnet18", "cifar10", tta="flip").tta == "flip"
    with pytest.raises(DnicError, match="tta"):
        make_config("resnet18", "mnist", tta="flip")  # digits are never trained on mirrored images
    assert make_config("resnet18", "mnist", tta="multiview").tta == "multiview"  # shifts only, no mirror images
    assert make_config("lenet5", "mnist", epochs=3, batch_size=7, lr=0.01).epochs == 3
    assert make_config("lenet5", "fashion-mnist").dataset == "fashion_mnist"  # normalised, so records share one name
    assert lenet.to_dict()["arch"] == "lenet5"


def test_cuda_without_gpu_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DnicError) as err:
        make_config("lenet5", "mnist", profile="smoke", device="cuda")
    assert "no GPU" in str(err.value) and "Fix:" in str(err.value)


def test_non_default_parameters_get_their_own_run_name() -> None:
    default = make_config("resnet18", "mnist", profile="smoke")
    assert default.variant == "" and default.run_name == "mnist-resnet18"
    custom = make_config("resnet18", "mnist", profile="smoke", epochs=3, optimizer="adamw")
    assert custom.variant and custom.run_name == f"mnist-resnet18-{custom.variant}"
    assert make_config("resnet18", "mnist", profile="smoke", epochs=3, optimizer="adamw").variant == custom.variant
    assert make_config("resnet18", "mnist", profile="smoke", seed=1).variant not in ("", custom.variant)


# A valid value other than the default for each recipe field: a new field without one here fails the test below.
OTHER_VALUES = {"epochs": 3, "batch_size": 16, "train_size": 1000, "val_size": 500, "test_size": 500, "patience": 5, "optimizer": "adamw",
                "lr": 0.01, "lr_per_64": 0.1, "momentum": 0.85, "bias_decay": True, "weight_decay": 1e-3, "schedule": "cosine", "label_smoothing": 0.0, "augment": False, "amp": "off", "seed": 1,
                "tta": "flip", "bias_lr": 3.0, "lookahead": True, "translate": 1, "rotation": 0.0, "alternate_flips": True,
                "source": "imagenet", "cut": 1, "freeze": 1, "copied_lr": 0.5, "classes": "random:A", "labels_per_class": 10, "grey_as_rgb": True,
                "image_size": 64}
NEEDS = {name: {"source": "imagenet"} for name in ("cut", "freeze", "copied_lr")}  # fields that act on copied weights need a source


def test_every_recipe_field_changes_the_run_name() -> None:
    """The variant hash is derived from the fields: no parameter can be forgotten and give two recipes one name."""
    assert {f.name for f in recipe_fields()} == set(OTHER_VALUES)
    base = make_config("resnet18", "cifar10", profile="smoke")
    names = {base.run_name}
    for name, value in OTHER_VALUES.items():
        changed = make_config("resnet18", "cifar10", profile="smoke", **{name: value, **NEEDS.get(name, {})})
        assert changed.variant, name
        names.add(changed.run_name)
    assert len(names) == len(OTHER_VALUES) + 1
    assert make_config("resnet18", "cifar10", profile="smoke", device="cpu", compile=True).variant == ""  # how, not what, is trained


def test_the_profiles_own_values_given_explicitly_keep_the_default_name() -> None:
    smoke = PROFILES["smoke"]
    cfg = make_config("resnet18", "cifar10", profile="smoke", epochs=smoke.epochs, batch_size=smoke.batch_size, lr=0.05 * smoke.batch_size / 64)
    assert cfg.run_name == "cifar10-resnet18"


def test_replace_keeps_the_filled_in_values_and_the_name() -> None:
    cfg = make_config("lenet5", "mnist", profile="smoke")
    assert dataclasses.replace(cfg) == cfg and dataclasses.replace(cfg).run_name == cfg.run_name


def test_config_line_names_every_recipe_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DNIC_PROFILE", raising=False)
    quick = PROFILES["quick"]
    line = report.config_line(make_config("lenet5", "mnist", profile="quick", optimizer="adamw")).lower()
    assert f"{quick.train_size:,} training images" in line and f"{quick.val_size:,} validation images" in line
    assert "optimizer adamw" in line and "peak learning rate 0.003" in line
    for f in recipe_fields():  # a new field shows up without touching config_line; a quiet one only when it is set
        parts = [part.strip().lower() for part in re.split(r"{[^}]*}", f.metadata["label"]) if part.strip()]
        assert all(part in line for part in parts) != bool(f.metadata.get("quiet")), f.name
        if f.metadata.get("quiet"):
            given = {"source": "cifar10-lenet5", f.name: OTHER_VALUES[f.name]}  # cut, freeze and copied_lr need a source
            changed = report.config_line(make_config("lenet5", "mnist", profile="quick", **given)).lower()
            assert all(part in changed for part in parts), f.name


def test_quiet_default_holds_only_for_a_quiet_option_at_its_default() -> None:
    assert quiet_default("freeze", 0) and quiet_default("source", None) and quiet_default("lr_per_64", 0.05)  # plain, optional, per-architecture
    assert not quiet_default("freeze", 1) and not quiet_default("lr_per_64", 0.1)
    assert not quiet_default("epochs", None) and not quiet_default("no_such_option", None)  # not quiet, not a field


def test_from_parameters_takes_the_declared_names_of_a_notebook_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DNIC_PROFILE", raising=False)
    namespace = {"arch": "lenet5", "dataset": "mnist", "profile": "smoke", "seed": 3, "data_dir": None, "Markdown": object()}
    cfg = from_parameters(namespace)
    assert (cfg.arch, cfg.profile, cfg.seed) == ("lenet5", "smoke", 3)
    assert set(PARAMETERS) >= {"arch", "dataset", "profile", "lr", "compile"}


@pytest.mark.parametrize("name", ["CIFAR-10", "cifar_10", "Cifar10", "Fashion-MNIST", "fashion_mnist", "MNIST"])
def test_dataset_names_are_accepted_in_any_spelling(name: str) -> None:
    assert make_config("lenet5", name, profile="smoke").dataset in ("cifar10", "fashion_mnist", "mnist")


def test_batch_size_is_bounded_by_the_training_images() -> None:
    with pytest.raises(DnicError) as err:
        make_config("lenet5", "mnist", profile="full", batch_size=10**9)
    assert "`batch_size`" in str(err.value) and "55,000" in str(err.value)  # 60,000 less the 5,000 validation images
    size = PROFILES["smoke"].train_size
    assert make_config("lenet5", "mnist", profile="smoke", batch_size=size).batch_size == size  # the smoke subset's size is allowed


def test_a_validation_split_as_large_as_the_training_set_names_val_size() -> None:
    for val_size in (60_000, 59_901, 5):
        with pytest.raises(DnicError) as err:
            make_config("lenet5", "mnist", profile="smoke", val_size=val_size)
        assert f"`val_size` {val_size:,} does not fit MNIST's 60,000 training images" in str(err.value) and "between 10 and 59,900" in str(err.value)
    assert make_config("lenet5", "mnist", profile="smoke", val_size=59_900).val_size == 59_900


def test_the_derived_learning_rate_is_checked_like_a_given_one() -> None:
    with pytest.raises(DnicError) as err:
        make_config("lenet5", "mnist", profile="full", batch_size=20_000)  # 0.05 per 64 images: 15.6
    assert "15.6" in str(err.value) and "`lr`" in str(err.value)
    assert make_config("lenet5", "mnist", profile="full", batch_size=20_000, lr=0.5).lr == 0.5


def test_dnic_profile_overriding_a_different_explicit_profile_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("DNIC_PROFILE", "smoke")
    assert make_config("lenet5", "mnist", profile="quick").profile == "smoke"
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "DNIC_PROFILE" in out[0] and "'quick'" in out[0]
    make_config("lenet5", "mnist", profile="smoke")
    make_config("lenet5", "mnist")
    assert capsys.readouterr().out == ""  # the same profile, or 'auto': nothing to say
    with pytest.raises(DnicError, match="'huge'"):
        make_config("lenet5", "mnist", profile="huge")  # invalid even though DNIC_PROFILE would override it


def test_unknown_run_parameter_is_named() -> None:
    with pytest.raises(DnicError) as err:
        make_config("lenet5", "mnist", profile="smoke", learning_rate=0.1)
    assert "learning_rate" in str(err.value) and "lr" in str(err.value)


def test_run_config_refuses_auto() -> None:
    with pytest.raises(DnicError, match="make_config"):
        RunConfig("lenet5", "mnist", "auto")


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10"])
def test_the_budget_profile_trains_every_architecture_alike_on_a_dataset(dataset: str) -> None:
    from dnic_utils.models import REGISTRY

    configs = [make_config(arch, dataset, profile="budget") for arch in REGISTRY]
    assert {c.epochs for c in configs} == {PROFILES["budget"].dataset_epochs[dataset]}  # light and heavy nets too
    assert {c.train_size for c in configs} == {None} and {c.val_size for c in configs} == {PROFILES["budget"].val_size}
    assert PROFILES["quick"].rank < PROFILES["budget"].rank < PROFILES["full"].rank


def test_an_architectures_recipe_fills_the_options_left_unset() -> None:
    fast, plain = make_config("fastnet", "cifar10", profile="smoke"), make_config("resnet18", "cifar10", profile="smoke")
    assert fast.variant == "" and fast.run_name == "cifar10-fastnet"  # its own recipe is its default, not a variant
    recipe = model_spec("fastnet").recipe
    assert {name: getattr(fast, name) for name in recipe} == recipe
    assert (plain.label_smoothing, plain.lookahead, plain.bias_lr, plain.rotation, plain.translate, plain.tta) == (0.1, False, 1.0, 10.0, 4, "off")
    assert make_config("resnet18", "mnist", profile="smoke").translate == 2  # 28×28 digits shift by 2 px, 32×32 images by 4
    changed = make_config("fastnet", "cifar10", profile="smoke", label_smoothing=0.1)
    assert changed.label_smoothing == 0.1 and changed.variant  # a value given for the run wins, and names a variant


def test_a_recipe_optimizer_sets_the_derived_learning_rate() -> None:
    inception, plain = make_config("inception_v3", "mnist", profile="smoke"), make_config("resnet18", "mnist", profile="smoke")
    assert (inception.optimizer, inception.lr, inception.variant) == ("adamw", 3e-3, "")  # AdamW's rate, not SGD's scaled one
    assert (plain.optimizer, plain.lr) == ("sgd", 0.05 * plain.batch_size / 64)
    assert [make_config(a, "mnist", profile="smoke").optimizer for a in ("vgg16", "vgg19")] == ["sgd", "adamw"]  # one VGG's recipe, not both
    assert [make_config(a, "mnist", profile="smoke").optimizer for a in ("resnet18", "resnet50", "resnet101")] == ["sgd", "adamw", "adamw"]
    assert make_config("inception_v3", "mnist", profile="smoke", optimizer="sgd").variant  # the profile's SGD is a variant here


def test_every_registry_recipe_names_per_architecture_options_with_valid_values() -> None:
    per_arch = {f.name for f in dataclasses.fields(RunConfig) if "default" in f.metadata} | {"translate"}
    for arch, spec in REGISTRY.items():
        assert set(spec.recipe) <= per_arch, arch
        make_config(arch, "cifar10", profile="smoke")  # the recipe's values pass the fields' checks


def test_a_bad_value_for_a_per_architecture_option_names_it() -> None:
    with pytest.raises(DnicError, match="bias_lr"):
        make_config("resnet18", "cifar10", profile="smoke", bias_lr=0)
    with pytest.raises(DnicError, match="tta"):
        make_config("fastnet", "cifar10", profile="smoke", tta="ten-crop")


def test_the_model_templates_parameters_cell_gives_runconfigs_defaults() -> None:
    """The template's values and its '[default]' comments are RunConfig's: a default changed in config.py and not there fails here."""
    cells = json.loads((REPO_ROOT / "notebooks" / "templates" / "model.ipynb").read_text())["cells"]
    source = "".join(next(c for c in cells if "parameters" in c["metadata"].get("tags", []))["source"])
    fields = RunConfig.__dataclass_fields__
    checked = 0
    for line in source.splitlines():
        match = re.match(r"(\w+) = ([^#]+?)\s*(?:#.*?)?(?:\[([^\]]+)\])?$", line)
        if not match or match[1] not in PARAMETERS[3:]:  # arch, dataset and profile have no default to hold it to
            continue
        name, value, bracket = match[1], ast.literal_eval(match[2]), match[3]
        default = field_default(fields[name])
        if value is not None:
            assert value == default, f"{name} = {value!r} in the template, {default!r} in RunConfig"
            checked += 1
        if bracket and name != "translate":  # translate's default depends on the image size, as its comment says
            try:
                shown = ast.literal_eval(bracket)
            except (ValueError, SyntaxError):
                shown = bracket
            assert shown == default, f"{name}: [{bracket}] in the template, {default!r} in RunConfig"
            checked += 1
    assert checked >= 15  # the cell's fixed values and bracketed defaults were all read


def test_the_training_recipe_leaves_out_what_the_profile_or_the_run_decides() -> None:
    fields = set(training_recipe_fields())
    assert {"optimizer", "schedule", "weight_decay", "label_smoothing", "augment", "tta"} <= fields
    assert not fields & {"epochs", "batch_size", "train_size", "val_size", "test_size", "patience", "lr", "seed", "device", "compile"}
