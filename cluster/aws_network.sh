#!/usr/bin/env bash
# Creates the security group that every node of cluster/aws.yaml uses (SecurityGroupIds).
# Inbound rules, and nothing else:
#   - SSH (tcp 22) from ADMIN_CIDR only (your public IP /32 or your VPN range);
#   - all traffic between members of the group itself (Ray's GCS, object manager, workers, NCCL).
# The Ray ports (6379 GCS, 8265 dashboard/jobs, 10001 client) are therefore reachable only
# from the cluster's own nodes; you reach 8265 through `ray dashboard cluster/aws.yaml` (SSH tunnel).
#
# Usage: ADMIN_CIDR=203.0.113.7/32 AWS_REGION=us-west-2 [VPC_ID=vpc-...] bash cluster/aws_network.sh
# Prints the group id to put into cluster/aws.yaml (sg-REPLACE_ME). Uses your AWS CLI login.
set -euo pipefail
: "${ADMIN_CIDR:?set ADMIN_CIDR to the address range allowed to SSH in, e.g. 203.0.113.7/32}"
REGION=${AWS_REGION:-us-west-2}
GROUP_NAME=${GROUP_NAME:-clasp-ray}
case "$ADMIN_CIDR" in
  */0|*/1|*/2|*/3|*/4|*/5|*/6|*/7) echo "refusing ADMIN_CIDR=$ADMIN_CIDR: far too wide for SSH" >&2; exit 1 ;;
esac
VPC_ID=${VPC_ID:-$(aws ec2 describe-vpcs --region "$REGION" --filters Name=is-default,Values=true \
  --query 'Vpcs[0].VpcId' --output text)}
SG_ID=$(aws ec2 create-security-group --region "$REGION" --vpc-id "$VPC_ID" --group-name "$GROUP_NAME" \
  --description "clasp-dist Ray cluster: SSH from admin CIDR, all traffic within the group" \
  --query GroupId --output text)
aws ec2 authorize-security-group-ingress --region "$REGION" --group-id "$SG_ID" \
  --protocol tcp --port 22 --cidr "$ADMIN_CIDR" >/dev/null
aws ec2 authorize-security-group-ingress --region "$REGION" --group-id "$SG_ID" \
  --ip-permissions "IpProtocol=-1,UserIdGroupPairs=[{GroupId=$SG_ID}]" >/dev/null
echo "$SG_ID"
