"""S3 bucket regions: a bucket created outside us-east-1 on the loopback S3 server is read and written in
its own region (pyarrow does not follow a bucket elsewhere by itself); storage.region or AWS_REGION pin it."""

from __future__ import annotations

import boto3
import pytest

from clasp_dist.config import StorageConfig
from clasp_dist.data import generate_dataset, read_manifest
from clasp_dist.data.filesystem import _resolve_region, bucket_region, get_arrow_fs, get_fs
from clasp_dist.data.split_reader import iter_local_samples

FAR = "ap-southeast-2"


@pytest.fixture
def far_bucket(s3_server, monkeypatch):
    """`s3://clasp-far-region` created with LocationConstraint ap-southeast-2; AWS_REGION unset (the
    session's AWS_DEFAULT_REGION=us-east-1 stays: it is only the fallback)."""
    monkeypatch.delenv("AWS_REGION", raising=False)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    name = "clasp-far-region"
    if name not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": FAR})
    _resolve_region.cache_clear()
    yield f"s3://{name}"
    _resolve_region.cache_clear()


def test_region_is_asked_from_the_bucket(far_bucket, tiny_root):
    assert bucket_region(f"{far_bucket}/ds") == FAR
    arrow, _ = get_arrow_fs(f"{far_bucket}/ds")
    assert arrow.region == FAR  # Ray Data reads and Train checkpoints go to the bucket's region
    fs, _ = get_fs(f"{far_bucket}/ds")
    assert fs.client_kwargs["region_name"] == FAR
    root = generate_dataset(f"{far_bucket}/ds", "tiny", seed=0, workers=1, progress=False)
    assert read_manifest(root).splits == read_manifest(tiny_root).splits
    assert len(list(iter_local_samples(root, "test"))) == read_manifest(root).splits["test"].videos
    with arrow.open_input_stream(f"clasp-far-region/ds/{read_manifest(root).splits['test'].shards[0].path}") as f:
        assert len(f.read()) > 0


def test_config_region_and_aws_region_pin_it(far_bucket, monkeypatch):
    assert bucket_region(f"{far_bucket}/ds", StorageConfig(region="eu-west-3")) == "eu-west-3"
    assert get_arrow_fs(f"{far_bucket}/ds", StorageConfig(region="eu-west-3"))[0].region == "eu-west-3"
    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    assert bucket_region(f"{far_bucket}/ds") == "sa-east-1"


def test_unknown_bucket_falls_back_to_the_default_region(s3_server, monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    _resolve_region.cache_clear()
    assert bucket_region("s3://no-such-bucket-anywhere/x") == "eu-north-1"
