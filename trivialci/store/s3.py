"""The S3 backend: one object per key, in BUCKET under PREFIX/ (AWS S3, or a server that speaks its API).

    s3://BUCKET/PREFIX      the store; the key jobs/JOB/job.json is the object PREFIX/jobs/JOB/job.json

A put is one PutObject, or for a large file one multipart upload, read from
the descriptor the store checked (see the package docstring): S3 shows an
object only once its upload is complete, so a reader sees the old value or the
new one, whole, and a failed put leaves the old value. Listing one level is
ListObjectsV2 with delimiter '/' (its common prefixes are the directories), so
it reads no value. Objects whose names are no keys (written by something else)
are not listed. Deletes go 1,000 keys to a DeleteObjects request (S3's limit),
one request after the other, each checked for the keys it could not remove. The bucket is never created: making one is a decision about
region, cost and access that belongs to a person.

Endpoint and credentials are found the boto3 way (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_DEFAULT_REGION, an instance role, ...);
TRIVIALCI_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL, names a server that is not
AWS (MinIO, moto), addressed path-style. This is the only module that imports boto3.
"""

import os
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as boto_errors
from boto3.exceptions import Boto3Error, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from ..errors import BadInput
from . import (READ_CHUNK, STORE_ENV, ArtifactStore, StoredValue, StoreMissing, StoreUnavailable, check_key,
               check_prefix, is_key)

ENDPOINT_ENV = "TRIVIALCI_S3_ENDPOINT_URL"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "403",
           "InvalidClientTokenId", "ExpiredToken", "InvalidToken"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
# A user's mistake (a wrong endpoint) should fail in seconds, not after minutes of retries.
_CLIENT_CONFIG = dict(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
_BOTO_ERRORS = (boto_errors.BotoCoreError, boto_errors.ClientError, Boto3Error)
_TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20)
DELETE_BATCH = 1000  # keys per DeleteObjects request: S3's limit
PARALLEL_PUTS = 8  # files uploaded at once by put_tree (each large one also sends its parts in parallel)


class S3Store(ArtifactStore):
    """The artifact store in an S3 bucket: `aws s3 ls s3://BUCKET/PREFIX/jobs/` reads it."""

    def __init__(self, url: str):
        self.bucket, self.root = _parse_url(url)
        self.url = f"s3://{self.bucket}/{self.root}".rstrip("/")
        self.endpoint = os.environ.get(ENDPOINT_ENV) or os.environ.get("AWS_ENDPOINT_URL") or None
        self.client = self._client()

    def put_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._errors(key, "write"):
            self.client.put_object(Bucket=self.bucket, Key=self.root + key, Body=data)

    def put_stream(self, key: str, stream) -> None:
        check_key(key)
        with self._errors(key, "write"):
            self.client.upload_fileobj(stream, self.bucket, self.root + key, Config=_TRANSFER)

    def put_files(self, files: dict) -> list[str]:
        """Several PUTs in flight at once: a build's many small files cost round trips, not bandwidth."""
        if len(files) < 2:
            return super().put_files(files)
        with ThreadPoolExecutor(PARALLEL_PUTS, thread_name_prefix="s3-put") as pool:
            uploads = {key: pool.submit(self.put_source, key, files[key]) for key in sorted(files)}
        return [key for key, upload in uploads.items() if upload.result()]  # the first failure, as put_file said it

    def get_bytes(self, key: str) -> bytes:
        check_key(key)
        with self._errors(key, "read"):
            return self.client.get_object(Bucket=self.bucket, Key=self.root + key)["Body"].read()

    def open_value(self, key: str) -> StoredValue:
        check_key(key)
        with self._errors(key, "read"):
            return ObjectValue(self, key, self.client.get_object(Bucket=self.bucket, Key=self.root + key))

    def exists(self, key: str) -> bool:
        check_key(key)
        try:
            with self._errors(key, "read"):
                self.client.head_object(Bucket=self.bucket, Key=self.root + key)
        except StoreMissing as missing:
            if missing.key is None:
                raise
            return False
        return True

    def delete(self, key: str) -> None:
        self.delete_keys([key])

    def delete_keys(self, keys: list[str]) -> int:
        """One DeleteObjects request per DELETE_BATCH keys (S3 removes a missing key without complaint)."""
        keys = [check_key(key) for key in keys]
        for start in range(0, len(keys), DELETE_BATCH):
            self._delete_batch(keys[start:start + DELETE_BATCH])
        return len(keys)

    def _delete_batch(self, keys: list[str]) -> None:
        objects = [{"Key": self.root + key} for key in keys]
        with self._errors(keys[0], "delete"):
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise StoreUnavailable(f"cannot delete {first.get('Key', '')[len(self.root):]} in {self.where()}: "
                                   f"{first.get('Code')}: {first.get('Message')} ({len(errors)} key(s) not deleted)")

    def key_sizes(self, prefix: str) -> dict[str, int]:
        prefix = check_prefix(prefix)
        sizes = {item["Key"][len(self.root):]: item["Size"] for page in self._pages(prefix)
                 for item in page.get("Contents", [])}
        return {key: sizes[key] for key in sorted(sizes) if is_key(key)}

    def list_children(self, prefix: str) -> list[str]:
        prefix = check_prefix(prefix)
        names = set()
        for page in self._pages(prefix, Delimiter="/"):
            names.update(common["Prefix"][len(self.root + prefix):-1] for common in page.get("CommonPrefixes", []))
            names.update(item["Key"][len(self.root + prefix):] for item in page.get("Contents", []))
        return sorted(name for name in names if is_key(prefix + name))

    def list_keys(self, prefix: str) -> list[str]:
        prefix = check_prefix(prefix)
        keys = [item["Key"][len(self.root):] for page in self._pages(prefix) for item in page.get("Contents", [])]
        return sorted(key for key in keys if is_key(key))

    def _pages(self, prefix: str, **options):
        """The pages of ListObjectsV2 under PREFIX/prefix (1,000 objects each), fetched as they are read."""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(prefix or "the store", "list"):
            yield from paginator.paginate(Bucket=self.bucket, Prefix=self.root + prefix, **options)

    def _client(self):
        options = {"s3": {"addressing_style": "path"}} if self.endpoint else {}
        try:
            return boto3.session.Session().client("s3", endpoint_url=self.endpoint,
                                                  config=Config(**_CLIENT_CONFIG, **options))
        except ValueError as error:  # botocore says "Invalid endpoint: ..."
            raise BadInput(f"cannot use the S3 endpoint {self.endpoint!r}: {error}; set ${ENDPOINT_ENV} to a URL "
                           "such as http://127.0.0.1:9000, or unset it for AWS") from None
        except boto_errors.BotoCoreError as error:
            raise StoreUnavailable(f"cannot open the artifact store {self.url}: {error}") from None

    @contextmanager
    def _errors(self, key: str, action: str):
        """What boto3 raises, as StoreMissing / StoreUnavailable: one line a person can act on."""
        try:
            yield
        except _BOTO_ERRORS as error:
            raise translate(self, key, action, error) from None

    def where(self) -> str:
        return f"the artifact store {self.url}" + (f" at {self.endpoint}" if self.endpoint else "")


class ObjectValue(StoredValue):
    """One GetObject's streaming body. Reading from a later byte is a ranged GET of the same version
    (If-Match its ETag): a put meanwhile makes it fail (StoreUnavailable) rather than mix two values."""

    def __init__(self, store: S3Store, key: str, response: dict):
        self.store, self.key, self.etag = store, key, response.get("ETag")
        self.size, self.body = response["ContentLength"], response["Body"]

    def chunks(self, first: int = 0, last: int | None = None):
        first, last = self.span(first, last)
        with self.store._errors(self.key, "read"):
            if first > 0 and first <= last:
                self._from(first, last)
            while first <= last:
                data = self.body.read(min(READ_CHUNK, last - first + 1))
                if not data:
                    raise StoreUnavailable(f"the S3 server ended {self.key} of {self.store.where()} early")
                first += len(data)
                yield data

    def _from(self, first: int, last: int) -> None:
        self.body.close()
        self.body = self.store.client.get_object(Bucket=self.store.bucket, Key=self.store.root + self.key,
                                                 Range=f"bytes={first}-{last}", IfMatch=self.etag)["Body"]

    def close(self) -> None:
        self.body.close()


def translate(store: S3Store, key: str, action: str, error: Exception) -> Exception:
    """The StoreMissing or StoreUnavailable that says what went wrong with `error`, and what to do."""
    cause = error.__cause__ or error.__context__  # upload_file wraps the ClientError it met
    if isinstance(error, S3UploadFailedError) and cause is not None:
        error = cause
    if isinstance(error, boto_errors.ClientError):
        return _client_error(store, key, action, error)
    if isinstance(error, (boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError)):
        return StoreUnavailable(f"no S3 credentials for {store.where()}: set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment of every node")
    if isinstance(error, (boto_errors.ConnectionError, boto_errors.HTTPClientError)):
        return StoreUnavailable(f"cannot reach the S3 server of {store.where()}: {error}; check "
                                f"${ENDPOINT_ENV} (or AWS_ENDPOINT_URL) and that the server is up")
    return StoreUnavailable(f"cannot {action} {key} in {store.where()}: {error}")


def _client_error(store: S3Store, key: str, action: str, error) -> Exception:
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code == "NoSuchBucket":
        return StoreMissing(f"no S3 bucket {store.bucket} for {store.where()}: check --store (or ${STORE_ENV}) "
                            f"and the endpoint; the store's bucket is made by a person, e.g. aws s3 mb s3://{store.bucket}")
    if code in _MISSING_KEY and action == "read":
        return StoreMissing.for_key(key, store.url)
    if code in ("PreconditionFailed", "412") and action == "read":
        return StoreUnavailable(f"{key} in {store.where()} was replaced while it was being read; read it again")
    if code in _DENIED:
        return StoreUnavailable(f"access denied to {action} {key} in {store.where()} ({code}): check the "
                                "credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) and that they may use this bucket")
    message = error.response.get("Error", {}).get("Message", "") or str(error)
    return StoreUnavailable(f"cannot {action} {key} in {store.where()}: {code}: {message}")


def _parse_url(url: str) -> tuple[str, str]:
    """(bucket, 'PREFIX/' or '') of s3://BUCKET/PREFIX; BadInput that says how to write it otherwise."""
    parts = urlsplit(url)
    if parts.query or parts.fragment or not _BUCKET.fullmatch(parts.netloc):
        raise BadInput(f"{url!r} is not an S3 store URL: write s3://BUCKET/PREFIX, with a bucket name of "
                       "3 to 63 lowercase letters, digits, '.' and '-' (the prefix may be left out)")
    return parts.netloc, check_prefix(parts.path.strip("/"))

