"""The S3 archive (any S3 API: MinIO, SeaweedFS, AWS) through the ``minio`` SDK.

Idempotence: each object carries its sha256 in user metadata (``x-amz-meta-sha256``); an object whose key, size and
sha256 match the local file is not uploaded again. Objects go first, ``manifest.json`` last, so a manifest means the
archive is complete. Every vendor error becomes :class:`~budeval.errors.ArchiveUnavailableError` naming the step.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from budeval.errors import ArchiveUnavailableError, BudevalError, ValidationError
from budeval.storage.archive_verify import ArchiveCheck, check_stored, compare_local, hash_stream, parse_manifest
from budeval.storage.base import ArchiveReceipt
from budeval.storage.manifest import MANIFEST_NAME, check_prefix, scan

SHA_META = "sha256"


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    line = line if len(line) <= 240 else line[:237] + "..."
    return f"{code}: {line}" if code and str(code) not in line else line


class S3Archive:
    """``s3://{bucket}/{base_prefix}/{prefix}/...`` plus ``manifest.json``; the bucket is created on first use."""

    def __init__(
        self,
        bucket: str,
        base_prefix: str,
        endpoint: str,
        access_key: str | None,
        secret_key: str | None,
        region: str | None = None,
        *,
        timeouts_s: tuple[float, float],
        retries: int,
        retry_backoff_s: float,
    ) -> None:
        """``timeouts_s``: (connect, read) seconds; ``retries`` of a request failing with 5xx or no connection,
        sleeping ``retry_backoff_s`` x 2^n s between them (settings ``archive_*``). Credentials are plain here: the
        client needs them; they come from the settings' secrets and are never logged."""
        import urllib3
        from minio import Minio

        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValidationError(f"S3 endpoint must be http(s)://host:port, not {endpoint!r}", field="archive_url")
        self.bucket = bucket
        self.base_prefix = base_prefix.strip("/")
        self.endpoint = endpoint
        # Few, short retries: the workflow's activity retry policy is the real backoff; a dead endpoint fails fast.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeouts_s[0], read=timeouts_s[1]),
            retries=urllib3.Retry(total=retries, backoff_factor=retry_backoff_s, status_forcelist=(500, 502, 503, 504)),
            maxsize=4,
        )
        try:
            self._client = Minio(
                parsed.netloc,
                access_key=access_key,
                secret_key=secret_key,
                secure=parsed.scheme == "https",
                region=region,
                http_client=http,
            )
        except ValueError as exc:
            raise ValidationError(f"S3 archive settings: {exc}", field="archive_url") from None
        self._bucket_ready = False

    def _url(self, key_prefix: str) -> str:
        return f"s3://{self.bucket}/{key_prefix}/"

    def _step(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BudevalError:
            raise
        except Exception as exc:
            raise ArchiveUnavailableError(
                f"{what} at {self.endpoint} failed: {_reason(exc)}; the source folder is unchanged"
            ) from exc

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        from minio.error import S3Error

        if not self._step(f"checking bucket {self.bucket}", self._client.bucket_exists, self.bucket):
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise ArchiveUnavailableError(
                        f"creating bucket {self.bucket} at {self.endpoint} failed: {_reason(exc)}"
                    ) from exc
            except Exception as exc:
                raise ArchiveUnavailableError(
                    f"creating bucket {self.bucket} at {self.endpoint} failed: {_reason(exc)}"
                ) from exc
        self._bucket_ready = True

    def _existing(self, key_prefix: str) -> dict[str, int]:
        def listing() -> dict[str, int]:
            objects = self._client.list_objects(self.bucket, prefix=key_prefix + "/", recursive=True)
            return {o.object_name: int(o.size or 0) for o in objects if o.object_name}

        result: dict[str, int] = self._step(f"listing s3://{self.bucket}/{key_prefix}/", listing)
        return result

    def _previous_manifest(self, key_prefix: str) -> dict[str, str]:
        """path -> sha256 from an earlier manifest: the fallback where an S3 API drops user metadata."""
        key = f"{key_prefix}/{MANIFEST_NAME}"

        def read() -> bytes:
            response = self._client.get_object(self.bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        try:
            data = json.loads(self._step(f"reading {key}", read))
            return {str(f["path"]): str(f["sha256"]) for f in data.get("files", [])}
        except (ValueError, TypeError, KeyError, AttributeError, ArchiveUnavailableError):
            return {}

    def _stored_sha(self, key: str) -> str | None:
        stat = self._step(f"checking s3://{self.bucket}/{key}", self._client.stat_object, self.bucket, key)
        metadata = stat.metadata or {}
        for name, value in metadata.items():
            if str(name).lower() in (f"x-amz-meta-{SHA_META}", SHA_META):
                return str(value)
        return None

    def _same(self, key: str, size: int, sha256: str, existing: dict[str, int], rel: str, old: dict[str, str]) -> bool:
        if existing.get(key) != size:
            return False
        stored = self._stored_sha(key)
        if stored is None:
            stored = old.get(rel)
        return stored == sha256

    def upload_run(self, source: Path, prefix: str, provenance: dict[str, Any]) -> ArchiveReceipt:
        prefix = check_prefix(prefix)
        key_prefix = f"{self.base_prefix}/{prefix}" if self.base_prefix else prefix
        manifest, local = scan(source, prefix, provenance)
        self._ensure_bucket()
        existing = self._existing(key_prefix)
        old = self._previous_manifest(key_prefix) if f"{key_prefix}/{MANIFEST_NAME}" in existing else {}
        uploaded = skipped = 0
        for entry in manifest.files:
            key = f"{key_prefix}/{entry.path}"
            if self._same(key, entry.size, entry.sha256, existing, entry.path, old):
                skipped += 1
                continue
            self._step(
                f"uploading {entry.path} to s3://{self.bucket}/{key}",
                self._client.fput_object,
                self.bucket,
                key,
                str(local[entry.path]),
                metadata={SHA_META: entry.sha256},
            )
            uploaded += 1
        body = manifest.to_bytes()
        digest = hashlib.sha256(body).hexdigest()
        key = f"{key_prefix}/{MANIFEST_NAME}"
        if self._same(key, len(body), digest, existing, MANIFEST_NAME, {}):
            skipped += 1
        else:
            self._step(
                f"uploading {MANIFEST_NAME} to s3://{self.bucket}/{key}",
                self._client.put_object,
                self.bucket,
                key,
                io.BytesIO(body),
                len(body),
                content_type="application/json",
                metadata={SHA_META: digest},
            )
            uploaded += 1
        return ArchiveReceipt(
            url=self._url(key_prefix),
            files=len(manifest.files) + 1,
            bytes=manifest.total_bytes + len(body),
            uploaded=uploaded,
            skipped=skipped,
        )

    def verify_run(self, source: Path, prefix: str) -> ArchiveCheck:
        """Whether ``s3://{bucket}/{base}/{prefix}/`` holds ``source`` (budeval/storage/archive_verify.py): every
        object read back and hashed (not its ``sha256`` metadata: that is what the uploader claimed), every local file
        listed. A missing or damaged archive gives ``ok`` False; an unreachable one raises
        :class:`~budeval.errors.ArchiveUnavailableError` (transient: ask again later)."""
        from minio.error import S3Error

        prefix = check_prefix(prefix)
        key_prefix = f"{self.base_prefix}/{prefix}" if self.base_prefix else prefix
        url = self._url(key_prefix)

        def read(key: str) -> tuple[int, str] | None:
            try:
                response = self._client.get_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchBucket"):
                    return None
                raise
            try:
                return hash_stream(response)
            finally:
                response.close()
                response.release_conn()

        def manifest_and_time() -> tuple[bytes, Any] | None:
            try:
                info = self._client.stat_object(self.bucket, f"{key_prefix}/{MANIFEST_NAME}")
                response = self._client.get_object(self.bucket, f"{key_prefix}/{MANIFEST_NAME}")
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                    return None
                raise
            try:
                return bytes(response.read()), info.last_modified
            finally:
                response.close()
                response.release_conn()

        found = self._step(f"reading {url}{MANIFEST_NAME}", manifest_and_time)
        if found is None:
            return ArchiveCheck(ok=False, url=url, reason=f"no manifest at {url}")
        body, archived_at = found
        manifest = parse_manifest(body, url)
        if isinstance(manifest, str):
            return ArchiveCheck(ok=False, url=url, reason=manifest, archived_at=archived_at)
        reason = self._step(
            f"reading back {url}", check_stored, manifest.files, lambda rel: read(f"{key_prefix}/{rel}")
        ) or compare_local(source, manifest)
        return ArchiveCheck(ok=not reason, url=url, reason=reason, archived_at=archived_at,
                            files=len(manifest.files), bytes=manifest.total_bytes)
