#!/usr/bin/env bash
# Runs one `distill` program on every worker of a TPU VM pod slice.
#   tools/launch_tpu_pod.sh TPU_NAME ZONE PROGRAM --config ... --workdir gs://...
# JAX discovers the coordinator and the process ranks on TPU VMs, so no rank flags are needed.
# Every worker needs the package with the `gcs` extra for a gs:// work directory:
#   pip install -e '.[gcs,tfds]' 'jax[tpu]'      (docs/multihost.md)
set -euo pipefail
tpu=$1 zone=$2
shift 2
args=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all \
  --command "cd flaxbert && distill $args 2>&1 | tee -a distill_\$(hostname).log"
