"""A small S3 client: what a copy needs (put, head, get, delete, list), signed with SigV4.

Why not an SDK: the box needs five requests, streamed from disk through the bandwidth
limit, and a Raspberry Pi should not import a large SDK for them. Every PUT carries the
body's SHA-256 (`x-amz-content-sha256`, checked by S3 against what arrives) and MD5
(`Content-MD5`), and the SHA-256 again as object metadata, which `head` gives back for
the copy's own check. Works with AWS (virtual-hosted style) and with MinIO, Ceph,
Garage or moto through an endpoint URL (path style).
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, urlsplit

from appliance.backup.throttle import UNLIMITED, TokenBucket
from appliance.errors import BackupError

CHUNK = 64 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
META_SHA256 = "x-amz-meta-sha256"


class S3Error(BackupError):
    """The object store refused a request or could not be reached."""

    def __init__(self, message: str, hint: str | None = None, status: int = 0) -> None:
        super().__init__(message, hint)
        self.status = status


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign_v4(
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload_sha256: str,
    access_key: str,
    secret_key: str,
    region: str,
    amz_date: str,
    service: str = "s3",
) -> str:
    """The Authorization header of AWS Signature Version 4. `headers` are those sent
    besides Host (x-amz-date and x-amz-content-sha256 among them); all are signed."""
    signed = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    signed["host"] = host
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            quote(path, safe="/-_.~"),
            "&".join(
                f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
            ),
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret_key}".encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )


@dataclass(frozen=True)
class Listing:
    keys: list[tuple[str, int]]  # (key, size)
    prefixes: list[str]


class S3Client:
    """One bucket. `endpoint` empty: AWS itself, virtual-hosted style."""

    def __init__(
        self,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        endpoint: str = "",
        timeout: float = 60.0,
    ) -> None:
        self.bucket = bucket
        self.region = region
        self._access, self._secret = access_key, secret_key
        self.timeout = timeout
        if endpoint:
            url = urlsplit(endpoint)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise S3Error(
                    f"the S3 endpoint {endpoint!r} is not an http(s) URL",
                    hint="e.g. https://s3.example.com or http://127.0.0.1:9000",
                )
            self._https = url.scheme == "https"
            self.host = url.netloc
            self._base = f"{url.path.rstrip('/')}/{bucket}"
        else:
            self._https = True
            self.host = f"{bucket}.s3.{region}.amazonaws.com"
            self._base = ""
        self._connection: http.client.HTTPConnection | None = None

    def __repr__(self) -> str:
        return f"<S3Client {self.host} bucket {self.bucket}>"

    # -- transport ----------------------------------------------------------------------

    def _conn(self) -> http.client.HTTPConnection:
        if self._connection is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._connection = cls(self.host, timeout=self.timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _headers(
        self, method: str, path: str, query: dict[str, str], payload: str, extra: dict[str, str]
    ) -> dict[str, str]:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"x-amz-date": now, "x-amz-content-sha256": payload, **extra}
        headers["Authorization"] = sign_v4(
            method,
            self.host,
            path,
            query,
            headers,
            payload,
            self._access,
            self._secret,
            self.region,
            now,
        )
        return headers

    def _url(self, key: str, query: dict[str, str]) -> tuple[str, str]:
        path = f"{self._base}/{key}"
        text = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query.items()
        )
        return path, quote(path, safe="/-_.~") + (f"?{text}" if text else "")

    def _send(
        self,
        method: str,
        key: str,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        extra: dict[str, str] | None = None,
        retry: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        query = query or {}
        path, target = self._url(key, query)
        headers = self._headers(method, path, query, hashlib.sha256(body).hexdigest(), extra or {})
        try:
            conn = self._conn()
            conn.request(method, target, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if retry:
                return self._send(method, key, query, body, extra, retry=False)
            raise S3Error(f"cannot reach {self.host}: {exc}", hint="is the network up?") from exc
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def _check(self, status: int, data: bytes, doing: str) -> None:
        if status < 300:
            return
        code, message = str(status), ""
        try:
            root = ET.fromstring(data)
            code = root.findtext("Code") or code
            message = root.findtext("Message") or ""
        except ET.ParseError:
            pass
        hints = {
            "NoSuchBucket": "create the bucket first, or check backup.target",
            "AccessDenied": "check the access key in backup.s3_credentials and its policy",
            "SignatureDoesNotMatch": "check the secret in backup.s3_credentials and the clock",
            "InvalidAccessKeyId": "check the access key id in backup.s3_credentials",
        }
        raise S3Error(
            f"S3 refused to {doing}: {code} {message}".strip(), hints.get(code), status=status
        )

    # -- objects ------------------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO,
        size: int,
        sha256_hex: str,
        md5: bytes,
        throttle: TokenBucket = UNLIMITED,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream `size` bytes from `source`; S3 checks them against both digests."""
        extra = {
            "Content-Length": str(size),
            "Content-MD5": base64.b64encode(md5).decode(),
            "Content-Type": "application/octet-stream",
            META_SHA256: sha256_hex,
        }
        path, target = self._url(key, {})
        headers = self._headers("PUT", path, {}, sha256_hex, extra)
        try:
            conn = self._conn()
            conn.putrequest("PUT", target, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            left = size
            while left:
                piece = source.read(min(CHUNK, left))
                if not piece:
                    raise S3Error(f"{key}: the file shrank while it was sent")
                throttle.take(len(piece))
                if progress is not None:
                    progress(len(piece))
                conn.send(piece)
                left -= len(piece)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise S3Error(f"cannot send {key} to {self.host}: {exc}", "is the network up?") from exc
        except BaseException:
            self.close()  # a half-sent body: this connection is done for
            raise
        self._check(response.status, data, f"store {key}")

    def head(self, key: str) -> dict[str, str] | None:
        status, headers, data = self._send("HEAD", key)
        if status == 404:
            return None
        self._check(status, data, f"look at {key}")
        return headers

    def get(self, key: str) -> bytes | None:
        status, _, data = self._send("GET", key)
        if status == 404:
            return None
        self._check(status, data, f"read {key}")
        return data

    def delete(self, key: str) -> None:
        status, _, data = self._send("DELETE", key)
        if status != 404:
            self._check(status, data, f"delete {key}")

    def create_bucket(self) -> None:
        body = b""
        if self.region != "us-east-1":
            body = (
                '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{self.region}</LocationConstraint>"
                "</CreateBucketConfiguration>"
            ).encode()
        status, _, data = self._send("PUT", "", body=body)
        if status == 409:  # exists already (ours)
            return
        self._check(status, data, f"create the bucket {self.bucket}")

    def list(self, prefix: str, delimiter: str = "") -> Listing:
        keys: list[tuple[str, int]] = []
        prefixes: list[str] = []
        for root in self._pages(prefix, delimiter):
            ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
            for item in root.iter(f"{ns}Contents"):
                keys.append((item.findtext(f"{ns}Key") or "", int(item.findtext(f"{ns}Size") or 0)))
            for item in root.iter(f"{ns}CommonPrefixes"):
                prefixes.append(item.findtext(f"{ns}Prefix") or "")
        return Listing(keys, prefixes)

    def _pages(self, prefix: str, delimiter: str) -> Iterator[ET.Element]:
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if delimiter:
                query["delimiter"] = delimiter
            if token:
                query["continuation-token"] = token
            status, _, data = self._send("GET", "", query)
            self._check(status, data, f"list {prefix}")
            root = ET.fromstring(data)
            yield root
            ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
            token = root.findtext(f"{ns}NextContinuationToken") or ""
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return
