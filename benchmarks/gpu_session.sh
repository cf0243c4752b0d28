#!/usr/bin/env bash
# The full-profile report on a bare GPU machine that has PyTorch, torchvision and a scientific Python stack (pandas,
# seaborn, scikit-learn, requests, pyyaml, click, attrs, pygments, packaging, python-dateutil) but no papermill, no
# Jupyter kernel, no git checkout and no internet: a copy of the working tree is all it gets.
#
#   bash benchmarks/gpu_session.sh bundle DATASET [PYTHON_VERSION]
#       Here, with PyPI reachable: the packages such a machine lacks go to .whl/ (wheels for Python 3.12 by default),
#       the offline copy of DATASET (mnist, fashion_mnist or cifar10) from DNIC_DATA_DIR goes to .data/, and the
#       commit of the code to .data/SOURCE_COMMIT. Both folders are git-ignored: carry them.
#   bash benchmarks/gpu_session.sh run DATASET [STOP_AFTER_SECONDS] [LIMIT_SECONDS]
#       There, from the repository root: installs the wheels and runs DATASET's notebooks in the full profile.
#       --skip-done: a later call resumes where an earlier one stopped. No notebook starts after STOP_AFTER_SECONDS
#       (default 360) and the runner is stopped at LIMIT_SECONDS (default 540, under a 10-minute command limit; the
#       notebook it interrupts is lost). Whatever happens, every output written is packed into
#       $OUT/dnic-gpu-DATASET.tgz (build/ when OUT is unset).
#   bash benchmarks/gpu_session.sh speed [LIMIT_SECONDS]
#       There, with cifar10 bundled: benchmarks/speed.py, stopped at LIMIT_SECONDS (default 540), packed likewise
#       into dnic-gpu-speed.tgz.
# Back here, unpack each archive before the next call (its timing record is merged, not replaced): `tar xzf FILE`,
# then `python -m dnic_utils.runner --tables-only`, and commit.
set -euo pipefail

# What the runner needs beyond the machine's scientific stack (debugpy and jedi are optional for ipykernel and IPython).
WHEELS=(papermill==2.7.0 nbclient==0.11.0 nbformat==5.11.1 jupyter_client==8.10.0 jupyter_core==5.9.1 ipykernel==7.4.0
        ipython==9.18.1 ipython_pygments_lexers==1.1.1 comm==0.2.3 matplotlib_inline==0.2.2 nest_asyncio2==1.7.4
        traitlets==5.16.1 tornado==6.6.1 pyzmq==27.3.0 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53
        wcwidth==0.9.4 stack_data==0.6.3 executing==2.3.0 asttokens==3.0.2 pure_eval==0.2.4 fastjsonschema==2.22.3
        jsonschema==4.26.0 jsonschema_specifications==2025.9.1 referencing==0.37.0 rpds_py==2026.9.1 tenacity==9.2.1
        entrypoints==0.4.2 platformdirs==4.14.7)
declare -A FOLDER=([mnist]=MNIST [fashion_mnist]=FashionMNIST [cifar10]=CIFAR10-JPEG)

CODE_PATHS=(dnic_utils notebooks/templates benchmarks pyproject.toml requirements.txt ":(exclude)benchmarks/RESULTS.md")  # as dnic_utils.records.CODE_PATHS (a test holds them equal)

die() { echo "error: $1" >&2; echo "Fix: $2" >&2; exit 2; }

seconds() {  # validate a whole number of seconds
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a whole number of seconds, got '$2'." "pass e.g. 360."
}

dataset_folder() {
    [[ -n "${FOLDER[$1]:-}" ]] || die "unknown dataset '$1'." "use one of: ${!FOLDER[*]}."
    echo "${FOLDER[$1]}"
}

bundle() {
    local dataset=$1 python=${2:-3.12} folder src
    folder=$(dataset_folder "$dataset")
    src=${DNIC_DATA_DIR:-}
    [[ -n "$src" && -d "$src/$folder" ]] || die "DNIC_DATA_DIR does not hold $folder/." "point DNIC_DATA_DIR at the offline data root (e.g. ../shared/data)."
    [[ -z "$(git status --porcelain --untracked-files=no -- "${CODE_PATHS[@]}")" ]] \
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

setup() {  # install the carried wheels and point the package at the carried data; the commit comes from the bundle
    compgen -G '.whl/*.whl' > /dev/null || die "no wheels in .whl/." "run 'bash benchmarks/gpu_session.sh bundle DATASET' here and carry .whl and .data."
    [[ -s .data/SOURCE_COMMIT ]] || die "no .data/SOURCE_COMMIT." "run 'bash benchmarks/gpu_session.sh bundle DATASET' here and carry .data."
    STAMP=$(mktemp) && sleep 1  # outputs newer than this are this call's
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/dnic-site .whl/*.whl
    local commit
    commit=$(cat .data/SOURCE_COMMIT)
    export PYTHONPATH="/tmp/dnic-site:$PWD" DNIC_DATA_DIR="$PWD/.data" DNIC_CACHE_DIR=/tmp/dnic-cache PYTHONUNBUFFERED=1 DNIC_GIT_COMMIT="$commit"
    python3 -c "import papermill, ipykernel, torch, dnic_utils; print('torch', torch.__version__, '| cuda', torch.cuda.is_available())"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
}

pack() {  # every output this call wrote, into one archive
    local archive="${OUT:-build}/dnic-gpu-$1.tgz"
    mkdir -p "$(dirname "$archive")"
    { find notebooks results figures benchmarks/RESULTS.md -type f -newer "$STAMP" -print0 2>/dev/null || true; } \
        | tar czf "$archive" --null -T -
    tar tzf "$archive" | sed 's/^/packed: /'
}

run() {
    local dataset=$1 stop=${2:-360} limit=${3:-540} status=0
    dataset_folder "$dataset" > /dev/null
    seconds STOP_AFTER_SECONDS "$stop"
    seconds LIMIT_SECONDS "$limit"
    setup
    trap "pack $dataset" EXIT  # $dataset is one of FOLDER's keys: safe unquoted
    timeout "$limit" python3 -m dnic_utils.runner --profile full --only "[0-9][0-9][0-9]_${dataset}_*" --skip-done --stop-after "$stop" \
        || status=$?
    if [[ $status -eq 124 ]]; then  # the limit asked for, not a failure (and 124 would read as the command's own time-out)
        echo "stopped at $limit s (LIMIT_SECONDS): the notebook then running is lost; the next call resumes with it"
        status=0
    fi
    return $status
}

speed() {
    local limit=${1:-540} status=0
    seconds LIMIT_SECONDS "$limit"
    [[ -d .data/CIFAR10-JPEG ]] || die "the speed benchmark needs CIFAR-10 in .data/." "bundle cifar10 here and carry .data."
    setup
    trap 'pack speed' EXIT
    timeout "$limit" python3 benchmarks/speed.py --data-dir .data || status=$?
    return $status
}

case "${1:-}" in
    bundle) shift; [[ $# -ge 1 ]] || die "bundle needs a dataset." "bash benchmarks/gpu_session.sh bundle cifar10"; bundle "$@" ;;
    run) shift; [[ $# -ge 1 ]] || die "run needs a dataset." "bash benchmarks/gpu_session.sh run cifar10 360 540"; run "$@" ;;
    speed) shift; speed "$@" ;;
    *) die "unknown command '${1:-}'." "use: bash benchmarks/gpu_session.sh bundle|run|speed ..." ;;
esac
