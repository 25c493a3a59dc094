#!/usr/bin/env bash
# The local stack (S3, MLflow, a Ray head with token auth) on 127.0.0.1: start | stop | env | status.
# See infra/local/stack.py for what each command does; state lives in .local-stack/ (or $LOCAL_STACK_DIR).
set -euo pipefail
if [[ -n "${LOCAL_STACK_DIR:-}" && "$LOCAL_STACK_DIR" != /* ]]; then
    export LOCAL_STACK_DIR="$PWD/$LOCAL_STACK_DIR"
fi
cd "$(dirname "$0")/../.."
exec python3 -m infra.local.stack "$@"
