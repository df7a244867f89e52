"""Progress of a staging run: files and bytes done, rate and ETA, and the record that the CLI polls.

The job writes the record to ``<weights prefix>.staging-progress.json`` while it runs, so that
``bloomctl weights stage --wait`` can show progress without reading the build's logs. The record is removed
when staging succeeds and kept, with the error, when it fails.
"""

import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

PROGRESS_NAME = ".staging-progress.json"


@dataclass(frozen=True)
class ProgressSnapshot:
    """Counts at one moment; bytes include files skipped because they were already staged."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    elapsed_seconds: float
    # Rate of the bytes transferred in this run, without skipped files; None until bytes have moved.
    bytes_per_second: float | None
    eta_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ProgressSnapshot":
        return cls(**{name: values.get(name) for name in cls.__dataclass_fields__})


class ProgressTracker:
    """Counts files and bytes from several threads and calls ``report`` at most once per interval, unless forced."""

    def __init__(
        self,
        files_total: int,
        bytes_total: int,
        report: Callable[[ProgressSnapshot], None] | None = None,
        interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._files_total = files_total
        self._bytes_total = bytes_total
        self._files_done = 0
        self._bytes_skipped = 0
        self._bytes_moved = 0
        self._report = report
        self._interval = interval_seconds
        self._clock = clock
        self._started = clock()
        self._last_report: float | None = None

    def file_skipped(self, size: int) -> None:
        with self._lock:
            self._files_done += 1
            self._bytes_skipped += size
        self.maybe_report()

    def bytes_moved(self, count: int) -> None:
        with self._lock:
            self._bytes_moved += count
        self.maybe_report()

    def file_done(self) -> None:
        with self._lock:
            self._files_done += 1
        self.maybe_report()

    def rewind(self, count: int) -> None:
        """Take back bytes of a file that is staged again from its start."""
        with self._lock:
            self._bytes_moved -= count

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            elapsed = max(self._clock() - self._started, 0.0)
            done = self._bytes_skipped + self._bytes_moved
            rate = self._bytes_moved / elapsed if self._bytes_moved and elapsed > 0 else None
            remaining = max(self._bytes_total - done, 0)
            if rate:
                eta = remaining / rate
            elif remaining == 0:
                eta = 0.0
            else:
                eta = None
            return ProgressSnapshot(
                files_done=self._files_done,
                files_total=self._files_total,
                bytes_done=done,
                bytes_total=self._bytes_total,
                elapsed_seconds=round(elapsed, 1),
                bytes_per_second=round(rate, 1) if rate else None,
                eta_seconds=round(eta, 1) if eta is not None else None,
            )

    def maybe_report(self, force: bool = False) -> None:
        if self._report is None:
            return

        now = self._clock()
        with self._lock:
            due = force or self._last_report is None or now - self._last_report >= self._interval
            if due:
                self._last_report = now
        if due:
            self._report(self.snapshot())


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def format_progress(snapshot: ProgressSnapshot) -> str:
    """Return one line such as ``files 3/10, 1.2 GiB of 180.0 GiB (0.7%), 85.3 MiB/s, ETA 35m 12s``."""
    percent = 100.0 * snapshot.bytes_done / snapshot.bytes_total if snapshot.bytes_total else 100.0
    rate = f"{format_bytes(snapshot.bytes_per_second)}/s" if snapshot.bytes_per_second else "rate unknown"
    return (
        f"files {snapshot.files_done}/{snapshot.files_total}, {format_bytes(snapshot.bytes_done)} of "
        f"{format_bytes(snapshot.bytes_total)} ({percent:.1f}%), {rate}, ETA {format_duration(snapshot.eta_seconds)}"
    )


def progress_key(prefix: str) -> str:
    return f"{prefix}{PROGRESS_NAME}"


def write_progress_record(
    s3_client: Any,
    bucket: str,
    prefix: str,
    status: str,
    snapshot: ProgressSnapshot | None,
    detail: str = "",
) -> None:
    """Write the progress record; ``status`` is listing, staging, failed or verifying."""
    record = {
        "status": status,
        "detail": detail,
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "progress": snapshot.to_dict() if snapshot else None,
    }
    s3_client.put_object(
        Bucket=bucket,
        Key=progress_key(prefix),
        Body=json.dumps(record).encode(),
        ContentType="application/json",
    )


def read_progress_record(s3_client: Any, bucket: str, prefix: str) -> dict[str, Any] | None:
    """Return the progress record, or None when there is none."""
    try:
        body = s3_client.get_object(Bucket=bucket, Key=progress_key(prefix))["Body"].read()
    except s3_client.exceptions.NoSuchKey:
        return None

    try:
        record = json.loads(body)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def delete_progress_record(s3_client: Any, bucket: str, prefix: str) -> None:
    s3_client.delete_object(Bucket=bucket, Key=progress_key(prefix))
