#!/usr/bin/env bash
# The full-profile report on a bare GPU machine that has torch, torchvision, pandas, seaborn and scikit-learn but no
# papermill, no Jupyter kernel, no git checkout and no internet (a copy of the working tree is all it gets).
#
#   bash benchmarks/gpu_session.sh bundle DATASET [PYTHON_VERSION]
#       Here, with PyPI reachable: papermill and the kernel packages such a machine lacks go to .whl/ (wheels for
#       Python 3.12 by default), the offline copy of DATASET (mnist, fashion_mnist or cifar10) from DNIC_DATA_DIR
#       goes to .data/, and the commit of the code to .data/SOURCE_COMMIT. Both folders are git-ignored: carry them.
#   bash benchmarks/gpu_session.sh run DATASET [STOP_AFTER_SECONDS] [--speed]
#       There, from the repository root: installs the wheels, runs DATASET's notebooks in the full profile
#       (--skip-done: a later call resumes where an earlier one stopped; no notebook starts after STOP_AFTER_SECONDS,
#       default 420), optionally benchmarks/speed.py, and packs every output it wrote into
#       $OUT/dnic-gpu-DATASET.tgz (build/ when OUT is unset). Unpack that here with `tar xzf FILE`, then run
#       `python -m dnic_utils.runner --tables-only` and commit.
set -euo pipefail

# What the runner needs beyond the machine's scientific stack (debugpy and jedi are optional for ipykernel and IPython).
WHEELS=(papermill==2.7.0 nbclient==0.11.0 nbformat==5.11.1 jupyter_client==8.10.0 jupyter_core==5.9.1 ipykernel==7.4.0
        ipython==9.18.1 ipython_pygments_lexers==1.1.1 comm==0.2.3 matplotlib_inline==0.2.2 nest_asyncio2==1.7.4
        traitlets==5.16.1 tornado==6.6.1 pyzmq==27.3.0 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53
        wcwidth==0.9.4 stack_data==0.6.3 executing==2.3.0 asttokens==3.0.2 pure_eval==0.2.4 fastjsonschema==2.22.3
        jsonschema==4.26.0 jsonschema_specifications==2025.9.1 referencing==0.37.0 rpds_py==2026.9.1 tenacity==9.2.1
        entrypoints==0.4.2 platformdirs==4.14.7)
declare -A FOLDER=([mnist]=MNIST [fashion_mnist]=FashionMNIST [cifar10]=CIFAR10-JPEG)

die() { echo "error: $1" >&2; echo "Fix: $2" >&2; exit 2; }

dataset_folder() {
    [[ -n "${FOLDER[$1]:-}" ]] || die "unknown dataset '$1'." "use one of: ${!FOLDER[*]}."
    echo "${FOLDER[$1]}"
}

bundle() {
    local dataset=$1 python=${2:-3.12} folder src
    folder=$(dataset_folder "$dataset")
    src=${DNIC_DATA_DIR:-}
    [[ -n "$src" && -d "$src/$folder" ]] || die "DNIC_DATA_DIR does not hold $folder/." "point DNIC_DATA_DIR at the offline data root (e.g. ../shared/data)."
    [[ -z "$(git status --porcelain --untracked-files=no -- dnic_utils notebooks/templates benchmarks)" ]] \
        || die "the code has uncommitted changes, so the run could not name its commit." "commit first, then bundle."
    rm -rf .whl .data && mkdir -p .whl .data
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
    cp -r "$src/$folder" .data/
    git rev-parse HEAD > .data/SOURCE_COMMIT
    du -sh .whl .data
    echo "carry: .whl .data  (with the tracked tree, under 64 MiB)"
}

run() {
    local dataset=$1 stop=${2:-420} speed=${3:-} out=${OUT:-build} stamp
    dataset_folder "$dataset" > /dev/null
    stamp=$(mktemp) && touch "$stamp" && sleep 1  # outputs newer than this are this call's
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/dnic-site .whl/*.whl
    export PYTHONPATH="/tmp/dnic-site:$PWD" DNIC_DATA_DIR="$PWD/.data" DNIC_CACHE_DIR=/tmp/dnic-cache PYTHONUNBUFFERED=1
    export DNIC_GIT_COMMIT="$(cat .data/SOURCE_COMMIT)"
    python3 -c "import papermill, ipykernel, torch, dnic_utils; print('torch', torch.__version__, '| cuda', torch.cuda.is_available())"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    local status=0
    python3 -m dnic_utils.runner --profile full --only "[0-9][0-9][0-9]_${dataset}_*" --skip-done --stop-after "$stop" || status=$?
    if [[ "$speed" == "--speed" ]]; then
        DNIC_PROFILE=full python3 benchmarks/speed.py --data-dir .data || status=$?
    fi
    mkdir -p "$out"
    find notebooks results figures README.md benchmarks/RESULTS.md -type f -newer "$stamp" -print0 \
        | tar czf "$out/dnic-gpu-$dataset.tgz" --null -T -
    tar tzf "$out/dnic-gpu-$dataset.tgz" | sed 's/^/packed: /'
    return $status
}

case "${1:-}" in
    bundle) shift; [[ $# -ge 1 ]] || die "bundle needs a dataset." "bash benchmarks/gpu_session.sh bundle cifar10"; bundle "$@" ;;
    run) shift; [[ $# -ge 1 ]] || die "run needs a dataset." "bash benchmarks/gpu_session.sh run cifar10 420 --speed"; run "$@" ;;
    *) die "unknown command '${1:-}'." "use: bash benchmarks/gpu_session.sh bundle|run DATASET ..." ;;
esac
