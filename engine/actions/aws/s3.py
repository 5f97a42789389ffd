"""S3: ``aws.s3_list`` (objects under a prefix, the newest one) and ``aws.s3_copy``
(upload, download, cross-bucket and cross-region copy; multipart for large objects).

A copy compares ETag and size first and copies nothing when the destination
already holds the same bytes. Uploads and copies use ``part_size`` parts (8 MiB, as
the AWS CLI does), so a local file's multipart ETag can be computed the same way.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.actions.aws.common import human_bytes, schema
from engine.actions.base import Action, ActionError, Context, Result
from engine.connections.aws import AwsApiError, api_error, call, paginate, session_for

MIB = 1024 * 1024
DEFAULT_PART = 8 * MIB
NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class Location:
    """``s3://bucket/key`` or a local path."""

    bucket: str | None
    key: str

    @classmethod
    def parse(cls, text: str) -> "Location":
        if text.startswith("s3://"):
            bucket, _, key = text[5:].partition("/")
            if not bucket:
                raise ActionError(f"{text}: no bucket name after s3://")
            return cls(bucket, key)
        return cls(None, text)

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.is_s3 else self.key

    def into(self, source: "Location") -> "Location":
        """This destination, with the source's file name added when it names a folder."""
        name = source.key.rstrip("/").rsplit("/", 1)[-1]
        if self.is_s3 and (self.key == "" or self.key.endswith("/")):
            return Location(self.bucket, self.key + name)
        if not self.is_s3 and (self.key.endswith("/") or Path(self.key).is_dir()):
            return Location(None, str(Path(self.key) / name))
        return self


# --------------------------------------------------------------------------
# Buckets and objects
# --------------------------------------------------------------------------

def bucket_region(ctx: Context, bucket: str, default: str | None) -> str | None:
    """The bucket's own region (a cross-region copy talks to each bucket's), cached per run."""
    known = session_for(ctx).bucket_regions
    if bucket in known:
        return known[bucket]
    try:
        found = call(ctx, "s3", "GetBucketLocation", {"Bucket": bucket}, region=default)
    except AwsApiError as exc:
        if exc.code == "NoSuchBucket":
            raise ActionError(f"s3: no bucket '{bucket}'") from None
        return default  # not allowed to ask: the target's region is the best guess
    constraint = found.get("LocationConstraint") or "us-east-1"
    known[bucket] = "eu-west-1" if constraint == "EU" else constraint
    return known[bucket]


def head(ctx: Context, where: Location, region: str | None) -> dict | None:
    """``{size, etag}`` of an object or local file, or None when there is none."""
    if not where.is_s3:
        path = Path(where.key)
        return {"size": path.stat().st_size} if path.is_file() else None
    try:
        found = call(ctx, "s3", "HeadObject", {"Bucket": where.bucket, "Key": where.key},
                     region=bucket_region(ctx, where.bucket, region))
    except AwsApiError as exc:
        if exc.code in NOT_FOUND:
            return None
        raise
    return {"size": found.get("ContentLength"), "etag": found.get("ETag", "").strip('"')}


def local_etag(path: Path, part_size: int) -> str:
    """The ETag S3 gives this file when uploaded in ``part_size`` parts."""
    size = path.stat().st_size
    if size < part_size:
        return _md5(path)
    digests = []
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(part_size)
            if not chunk:
                break
            digests.append(hashlib.md5(chunk).digest())
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def _etag_of(where: Location, found: dict | None, part_size: int) -> str | None:
    if found is None:
        return None
    if where.is_s3:
        return found.get("etag")
    return local_etag(Path(where.key), part_size)


# --------------------------------------------------------------------------
# aws.s3_list
# --------------------------------------------------------------------------

class ListObjects(Action):
    """List the objects under an S3 prefix; `latest: true` also picks the newest one."""

    name = "aws.s3_list"
    mutates = False
    args_schema = schema({
        "bucket": {"type": "string", "minLength": 1},
        "prefix": {"type": "string", "description": "only keys starting with this"},
        "suffix": {"type": "string", "description": "only keys ending with this (e.g. .sql.gz)"},
        "latest": {"type": "boolean", "description": "pick the newest object (last modified, "
                                                     "then key); fail when there is none"},
        "limit": {"type": "integer", "minimum": 0,
                  "description": "at most this many objects in `objects` (default 1000)"},
    }, ["bucket"])

    def touches(self, args: dict, ctx: Context) -> set[str]:
        return {f"aws:s3:{args.get('bucket')}"}

    def plan(self, args: dict, ctx: Context) -> str:
        return f"list s3://{args['bucket']}/{args.get('prefix', '')}"

    def run(self, args: dict, ctx: Context) -> Result:
        where = f"s3://{args['bucket']}/{args.get('prefix', '')}"
        objects = _listed(ctx, args)
        newest = max(objects, key=lambda o: (o["last_modified"], o["key"])) if objects else None
        if args.get("latest") and newest is None:
            raise ActionError(f"no objects under {where}{_suffix_text(args)}: nothing is the latest")
        limit = args.get("limit", 1000)
        data = {"objects": objects[:limit], "count": len(objects),
                "truncated": len(objects) > limit,
                "total_bytes": sum(o["size"] for o in objects), "latest": newest}
        message = f"{len(objects)} objects under {where}{_suffix_text(args)} " \
                  f"({human_bytes(data['total_bytes'])})"
        if newest is not None and args.get("latest"):
            message += f"; latest: {newest['key']}"
        return Result(ok=True, changed=False, data=data, message=message)


def _suffix_text(args: dict) -> str:
    return f" ending with {args['suffix']}" if args.get("suffix") else ""


def _listed(ctx: Context, args: dict) -> list[dict]:
    bucket = args["bucket"]
    params = {"Bucket": bucket, "Prefix": args.get("prefix", "")}
    region = bucket_region(ctx, bucket, args.get("region"))
    contents = paginate(ctx, "s3", "ListObjectsV2", params, region=region).get("Contents", [])
    suffix = args.get("suffix", "")
    return [{"key": o["Key"], "uri": f"s3://{bucket}/{o['Key']}", "size": o.get("Size", 0),
             "last_modified": o["LastModified"].isoformat(), "etag": o.get("ETag", "").strip('"'),
             "storage_class": o.get("StorageClass")}
            for o in contents if o["Key"].endswith(suffix)]


# --------------------------------------------------------------------------
# aws.s3_copy
# --------------------------------------------------------------------------

_PLACE = {"type": "string", "minLength": 1,
          "description": "s3://bucket/key (a key ending in / is a folder) or a local path"}


class Copy(Action):
    """Copy between S3 and local files or across buckets and regions, unless the ETag matches."""

    name = "aws.s3_copy"
    mutates = True
    args_schema = schema({
        "source": _PLACE,
        "destination": _PLACE,
        "part_size": {"type": "integer", "minimum": 5 * MIB,
                      "description": "multipart threshold and part size in bytes (default 8 MiB)"},
        "overwrite": {"type": "boolean",
                      "description": "replace a different object or file (default true)"},
    }, ["source", "destination"])

    @classmethod
    def literal_arg_errors(cls, args: Any):
        src, dst = args.get("source", ""), args.get("destination", "")
        if isinstance(src, str) and isinstance(dst, str) and "{{" not in src + dst:
            if not src.startswith("s3://") and not dst.startswith("s3://"):
                yield ("destination",), "one side must be s3://…: this is a local copy"

    def touches(self, args: dict, ctx: Context) -> set[str]:
        """The buckets it reads or writes, and a local file it uploads or downloads."""
        from engine.actions.resources import file_key

        keys = set()
        for text in (args.get("source", ""), args.get("destination", "")):
            where = Location.parse(str(text))
            keys.add(f"aws:s3:{where.bucket}" if where.is_s3 else file_key(where.key))
        return keys

    def plan(self, args: dict, ctx: Context) -> str:
        transfer = _Transfer(args, ctx)
        if transfer.source_info is None:
            return f"{transfer.verb} {transfer.source} → {transfer.destination} (source not there yet)"
        if transfer.same():
            return f"no change: same ETag ({transfer.destination})"
        if transfer.refused():
            return f"refused: {transfer.refused()}"
        replaces = " (replaces a different one)" if transfer.dest_info else ""
        return (f"{transfer.verb} {transfer.source} → {transfer.destination} "
                f"({human_bytes(transfer.source_info.get('size'))}){replaces}")

    def run(self, args: dict, ctx: Context) -> Result:
        transfer = _Transfer(args, ctx)
        if transfer.source_info is None:
            raise ActionError(f"{transfer.source}: no such {'object' if transfer.source.is_s3 else 'file'}")
        data = {"source": str(transfer.source), "destination": str(transfer.destination),
                "bytes": transfer.source_info.get("size"), "kind": transfer.verb}
        if transfer.same():
            data["etag"] = transfer.source_etag()
            return Result(ok=True, changed=False, data=data,
                          message=f"no change: {transfer.destination} has the same ETag")
        if transfer.refused():
            raise ActionError(transfer.refused())
        data["etag"] = transfer.execute()
        data["multipart"] = (data["bytes"] or 0) >= transfer.part_size
        return Result(ok=True, changed=True, data=data,
                      message=f"{transfer.verb} {transfer.source} → {transfer.destination} "
                              f"({human_bytes(data['bytes'])})")


class _Transfer:
    """One copy: where from and to, what is there now, and how to move the bytes."""

    def __init__(self, args: dict, ctx: Context) -> None:
        self.ctx, self.region = ctx, args.get("region")
        self.source = Location.parse(args["source"])
        self.destination = Location.parse(args["destination"]).into(self.source)
        if not (self.source.is_s3 or self.destination.is_s3):
            raise ActionError("aws.s3_copy: one side must be s3://…; this is a local copy")
        self.part_size = int(args.get("part_size", DEFAULT_PART))
        self.overwrite = args.get("overwrite", True)
        self.verb = "copy" if self.source.is_s3 and self.destination.is_s3 else (
            "upload" if self.destination.is_s3 else "download")
        self.source_info = head(ctx, self.source, self.region)
        self.dest_info = head(ctx, self.destination, self.region) if self.source_info else None

    def source_etag(self) -> str | None:
        return _etag_of(self.source, self.source_info, self.part_size)

    def same(self) -> bool:
        if not self.dest_info or self.dest_info.get("size") != self.source_info.get("size"):
            return False
        return self.source_etag() == _etag_of(self.destination, self.dest_info, self.part_size)

    def refused(self) -> str | None:
        if self.dest_info and not self.overwrite:
            return f"{self.destination} exists with different content (overwrite: false)"
        return None

    def execute(self) -> str | None:
        """Move the bytes; returns the destination's ETag."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=self.part_size,
                                multipart_chunksize=self.part_size, max_concurrency=4)
        session = session_for(self.ctx)
        try:
            self._move(session, config)
        except ActionError:
            raise
        except Exception as exc:
            raise api_error(session, "s3", self.verb, exc) from None
        landed = head(self.ctx, self.destination, self.region)
        if landed is None or landed.get("size") != self.source_info.get("size"):
            raise ActionError(f"{self.verb} to {self.destination} finished but its size is "
                              f"{(landed or {}).get('size')}, not {self.source_info.get('size')}")
        return _etag_of(self.destination, landed, self.part_size)

    def _move(self, session, config) -> None:
        src, dst = self.source, self.destination
        if self.verb == "upload":
            client = self._client(session, dst.bucket)
            client.upload_file(src.key, dst.bucket, dst.key, Config=config)
        elif self.verb == "download":
            Path(dst.key).parent.mkdir(parents=True, exist_ok=True)
            client = self._client(session, src.bucket)
            client.download_file(src.bucket, src.key, dst.key, Config=config)
        else:
            client = self._client(session, dst.bucket)
            client.copy({"Bucket": src.bucket, "Key": src.key}, dst.bucket, dst.key,
                        SourceClient=self._client(session, src.bucket), Config=config)

    def _client(self, session, bucket: str):
        return session.client("s3", bucket_region(self.ctx, bucket, self.region))
