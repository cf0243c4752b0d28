"""Classify images with an exported model: the top classes of each image, as a table or JSON.

Usage: python -m dnic_utils.predict IMAGE... [--model NAME] [--top-k 3] [--json]

IMAGE is a PNG or JPEG file, or a folder (its .png, .jpg and .jpeg files). Each image is converted to the model's
colour (grey or RGB) and resized to its input. A file that cannot be used gets one 'error: …' line on stderr and the
exit status is 1; the other images are still classified.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tabulate import tabulate

from .cli import positive_int, refuse
from .errors import DnicError
from .images import EXTENSIONS, read_file
from .onnx_model import OnnxModel, card_summary, load_model, stale_warning, top_classes

BATCH = 64  # images decoded and classified together


def image_paths(args: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files to classify (a folder contributes its images, sorted) and an (argument, problem) pair for each empty folder."""
    paths, problems = [], []
    for arg in args:
        path = Path(arg)
        try:
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS) if path.is_dir() else [path]
        except OSError as err:  # a folder that cannot be listed (no permission, gone meanwhile)
            problems.append((arg, f"The folder {arg} cannot be read ({err.strerror or type(err).__name__}). Fix: check its permissions, or pass its files."))
            continue
        paths += found
        if not found:
            problems.append((arg, f"The folder {arg} holds no {', '.join(EXTENSIONS)} file. Fix: pass PNG or JPEG files, or folders of them."))
    return paths, problems


def classify(model: OnnxModel, paths: list[Path], k: int) -> tuple[list[dict], list[tuple[str, str]]]:
    """The top k classes and all probabilities of each readable image, in order, and an (image, problem) pair for each other one."""
    results, problems = [], []
    for start in range(0, len(paths), BATCH):
        batch, names = [], []
        for path in paths[start : start + BATCH]:
            try:
                batch.append(model.decode(read_file(path), str(path)))
                names.append(str(path))
            except DnicError as err:
                problems.append((str(path), f"{err.problem} Fix: {err.fix}"))
        if batch:
            for name, probs in zip(names, model.probabilities(np.stack(batch))):
                results.append({"image": name, "top": top_classes(probs, model.classes, k),
                                "probabilities": {c: float(p) for c, p in zip(model.classes, probs)}})
    return results, problems


def table(model: OnnxModel, results: list[dict], k: int) -> str:
    """The model's line, then one row per image: its top k classes with probabilities."""
    card = model.card
    accuracy = f"test accuracy {card['test_acc']:.2%}" if card["test_acc"] is not None else "untrained: no test accuracy"
    profile = f", profile {card['profile']}" if card["profile"] else ""
    header = f"model {model.name}: {card['title']} ({accuracy}{profile})"
    if stale_warning(card):
        header += f"\n{stale_warning(card)}"
    ordinals = ["1st", "2nd", "3rd"] + [f"{i}th" for i in range(4, k + 1)]
    rows = [[r["image"], *(f"{t['class']} {t['probability']:.1%}" for t in r["top"])] for r in results]
    return f"{header}\n\n{tabulate(rows, headers=['image', *ordinals[:k]], tablefmt='simple')}" if rows else header


def main(argv: list[str] | None = None) -> int:
    """Classify the images; 0 if all were classified, 1 if any could not be, 2 for a bad model or option."""
    parser = argparse.ArgumentParser(prog="python -m dnic_utils.predict", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files, or folders of them")
    parser.add_argument("--model", help="a model name such as cifar10-lenet5 (found under results/*/models/, highest profile first) "
                                        "or an .onnx path; default: the CIFAR-10 model, else the first found")
    parser.add_argument("--top-k", type=positive_int, default=3, help="classes shown per image (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # images.MAX_PIXELS, lower than PIL's limit, is checked instead
    try:
        model = load_model(args.model)
    except DnicError as err:
        return refuse(err)
    k = min(args.top_k, len(model.classes))
    paths, problems = image_paths(args.images)
    results, bad = classify(model, paths, k)
    problems += bad
    if args.json:
        print(json.dumps({"model": card_summary(model.card), "predictions": results,
                          "errors": [{"image": name, "error": problem} for name, problem in problems]}, indent=1))
    else:
        print(table(model, results, k))
    for _, problem in problems:  # each problem names its file
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
