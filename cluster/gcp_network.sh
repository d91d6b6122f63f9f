#!/usr/bin/env bash
# Creates the dedicated VPC, subnet and firewall rules that every node of cluster/gcp.yaml uses.
# A custom-mode VPC starts with no ingress allowed; this adds only:
#   - SSH (tcp 22) from ADMIN_CIDR to instances tagged clasp-ray;
#   - all tcp/udp/icmp between instances tagged clasp-ray (Ray's GCS, object manager, workers, NCCL).
# The Ray ports (6379, 8265, 10001) are therefore reachable only from the cluster's own nodes;
# you reach 8265 through `ray dashboard cluster/gcp.yaml` (SSH tunnel).
#
# Usage: ADMIN_CIDR=203.0.113.7/32 PROJECT=my-project [REGION=us-central1] bash cluster/gcp_network.sh
set -euo pipefail
: "${ADMIN_CIDR:?set ADMIN_CIDR to the address range allowed to SSH in, e.g. 203.0.113.7/32}"
: "${PROJECT:?set PROJECT to your GCP project id}"
REGION=${REGION:-us-central1}
NET=${NET:-clasp-ray}
case "$ADMIN_CIDR" in
  */0|*/1|*/2|*/3|*/4|*/5|*/6|*/7) echo "refusing ADMIN_CIDR=$ADMIN_CIDR: far too wide for SSH" >&2; exit 1 ;;
esac
gcloud compute networks create "$NET" --project "$PROJECT" --subnet-mode=custom
gcloud compute networks subnets create "$NET" --project "$PROJECT" --network "$NET" \
  --region "$REGION" --range 10.42.0.0/20
gcloud compute firewall-rules create "$NET-ssh" --project "$PROJECT" --network "$NET" \
  --direction INGRESS --allow tcp:22 --source-ranges "$ADMIN_CIDR" --target-tags clasp-ray
gcloud compute firewall-rules create "$NET-internal" --project "$PROJECT" --network "$NET" \
  --direction INGRESS --allow tcp,udp,icmp --source-tags clasp-ray --target-tags clasp-ray
