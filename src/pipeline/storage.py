"""File listing and peeking through Hadoop's FileSystem API, so one code path serves local
folders and s3:// (EMRFS on EMR) alike."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import string
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from py4j.java_gateway import JavaClass
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from pipeline.files import LocalFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class LandingFile:
    uri: str  # URI form, as Spark reports it in _metadata.file_path; the ledger key's source
    path: str  # Hadoop path form, what readers are given
    size: int
    modified_ms: int  # modification time, epoch milliseconds (S3: the object's Last-Modified)

    @property
    def stamp(self) -> Stamp:
        """What tells one delivery of a path from another (a file rewritten in place)."""
        return (self.size, self.modified_ms)


Stamp = tuple[int, int]  # (size, modified_ms) of one delivery of a landing file


def file_key(uri: str) -> str:
    """One spelling of a file's URI for comparisons: Spark's `_metadata.file_path` says
    `file:/a/b` where the landing listing says `file:///a/b` (the same local file)."""
    if uri.startswith("file:/") and not uri.startswith("file://"):
        return "file://" + uri[len("file:") :]
    return uri


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?")  # a URI's scheme and authority


def path_part(location: str) -> str:
    """A location's path without scheme and authority: `file:/a/b`, `file:///a/b`,
    `s3a://bucket/a/b` and `/a/b` are all `/a/b`."""
    return "/" + _SCHEME.sub("", location).lstrip("/")


@dataclass(frozen=True)
class LandingKeys:
    """How bronze names one dataset's landing files in what it remembers (the ledger, its commit
    metadata, rejected files): by the file's URI below the lake's landing root (`crm/accounts/
    date=2026-07-01/a.csv`, in the URI's spelling, as `file_key`), so a lake moved or copied to
    another place (a renamed folder, another bucket or mount) knows the same files. Below the
    landing root, not the dataset's folder: a key keeps the folder, so a dataset pointed at
    another folder never takes that folder's files for ones it holds (a wrong "known" loses a
    delivery, a wrong "new" only ingests it again).

    Keys written as absolute URIs (before keys were relative) are read as relative ones: under
    this landing root, the part below it; under another root (the lake moved), the part from
    the dataset's folder on, found as `/<landing>/<folder>/` (its first place in the path: an
    old root holding it too gives a key no listed file has, never another file's); anything else
    (no such place: the dataset's folder changed) stays as it is, a key no listed file has."""

    root: str  # the landing root's URI (`location_uri` of <lake>/landing)
    folder: str  # the dataset's folder below it (the catalogue's `landing`), e.g. crm/accounts

    def __call__(self, uri: str) -> str:
        key = file_key(uri)
        if not _SCHEME.match(key) and not key.startswith("/"):
            return key  # relative already
        if key.startswith(self.root + "/"):
            return key[len(self.root) + 1 :]
        folder = _uri_path(self.folder.strip("/"))
        anchor = f"/{self.root.rsplit('/', 1)[-1]}/{folder}/"
        path = path_part(key)
        at = path.find(anchor)
        return key if at < 0 else f"{folder}/{path[at + len(anchor) :]}"


def location_uri(spark: SparkSession, location: str) -> str:
    """A folder's URI as Hadoop qualifies it, in `file_key`'s spelling, without a trailing `/`:
    `./lake` is `file:///<working folder>/lake`, `s3a://bucket/lake` stays as it is."""
    path, fs = _fs(spark, location)
    return file_key(fs.makeQualified(path).toUri().toString()).rstrip("/")


def _java(spark: SparkSession, name: str) -> JavaClass:
    """A JVM class by its full name: `jvm.a.b.C` costs a py4j round trip per name segment."""
    return JavaClass(name, spark.sparkContext._gateway._gateway_client)  # type: ignore[union-attr]


def _fs(spark: SparkSession, location: str):
    path = _java(spark, "org.apache.hadoop.fs.Path")(location)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]


# What java.net.URI keeps as it is in a path (RFC 2396 pchar, ';' and '/'), the rest of ASCII
# is percent-encoded: Hadoop's `Path.toUri()` spelling of an ASCII path, reproduced exactly.
_URI_PATH_AS_IS = frozenset(string.ascii_letters + string.digits + "-_.!~*'()" + ":@&=+$," + ";/")


def _uri_path(path: str) -> str:
    return "".join(c if c in _URI_PATH_AS_IS else f"%{ord(c):02X}" for c in path)


@dataclass(frozen=True)
class Listing:
    files: list[LandingFile]  # the new files, sorted
    ignored: list[str]  # URIs of the files matching no suffix (hidden and left-alone ones aside), sorted
    left_alone: int = 0  # files matching `leave_alone`, not listed


def list_files(
    spark: SparkSession,
    root: str,
    suffix: str | tuple[str, ...] = "",
    known: Mapping[str, Stamp | None] | None = None,
    key: Callable[[str], str] = file_key,
) -> list[LandingFile]:
    """`list_landing(...).files`: the new files below `root`."""
    return list_landing(spark, root, suffix, known, key).files


def folder_names(spark: SparkSession, location: str) -> list[str]:
    """The names of the files directly in a folder (none if it does not exist), hidden ones
    (`hidden`) left out: a streaming checkpoint's `commits`, `offsets` or source log. A local
    folder is listed by `pipeline.files` (through the JVM a listing costs ~30 ms of py4j round
    trips, and an idle stream step lists three at every run); another as `list_files` lists an
    object store."""
    path, fs = _fs(spark, location)
    local = _local(fs, path)
    if local is not None:
        return [n for n in LocalFiles().list_names(local) if not hidden(n)]
    if not fs.exists(path):
        return []
    names = (name.rsplit("/", 1)[-1] for name in _listed_files(spark, fs, path)[2])  # flat folders
    return sorted(n for n in names if not hidden(n))


def _local(fs, path) -> str | None:
    """A Hadoop path's local file path, or None when its file system is not the local one."""
    return fs.makeQualified(path).toUri().getPath() if fs.getScheme() == "file" else None


def hidden(relative: str) -> bool:
    """Whether a file at `relative` (below the listed root) is one Spark's own listing skips: a
    folder or file name starting with `.`, or with `_` unless it holds `=` (a partition folder,
    `_c=1`): a writer's `_temporary/` attempts, `.hidden/` folders, `_SUCCESS`; and a file still
    being copied (`x._COPYING_`)."""
    parts = relative.split("/")
    return parts[-1].endswith("._COPYING_") or any(
        p.startswith(".") or (p.startswith("_") and "=" not in p) for p in parts
    )


def left_alone(relative: str, patterns: tuple[str, ...]) -> bool:
    """Whether a file at `relative` (below the listed root) matches one of `patterns` (glob, any
    case), by that path or by its name: a dataset's `ignore`."""
    path = relative.lower()
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path, p.lower()) or fnmatch.fnmatchcase(name, p.lower()) for p in patterns)


def list_landing(
    spark: SparkSession,
    root: str,
    suffix: str | tuple[str, ...] = "",
    known: Mapping[str, Stamp | None] | None = None,
    key: Callable[[str], str] = file_key,
    leave_alone: tuple[str, ...] = (),
) -> Listing:
    """Every file below `root` ending in `suffix` (or one of them, in any case: `.CSV` is a
    `.csv`), sorted; hidden files skipped (`hidden`, by their path below `root`), and so are the
    files matching `leave_alone` (`left_alone`: no deliveries; counted) and the files `known`
    (e.g. already ingested) holds by `key` of their URI (`file_key`; bronze: `LandingKeys`) with
    their stamp (size, modification time) as it was ingested: a file whose stamp differs is
    listed (a new delivery under the same path); a stamp of None matches any (the ingest did not
    keep it). With them, the files that match no suffix (`ignored`), so a misnamed delivery can
    be reported.

    The listing crosses from the JVM as one string of Hadoop paths (a round trip per file cost
    ~6 py4j calls: seconds per idle run). Each file's URI is Hadoop's `toUri()` spelling (the
    ledger's key is its part below the landing root, `LandingKeys`): for an ASCII path spelled here by java.net.URI's rule (the scheme and authority
    as Hadoop spells them for the first file), checked against Hadoop's own for that file (a
    mismatch: every file is asked of Hadoop); a path with other characters is asked of Hadoop."""
    path, fs = _fs(spark, root)
    if not fs.exists(path):
        return Listing([], [])
    local = fs.getScheme() == "file"
    statuses, paths, names = (_local_files if local else _listed_files)(spark, fs, path)
    if not names:
        return Listing([], [])
    first = paths[0].toUri()
    # The path part of Path.toString() is the decoded URI path; what precedes it, in each form.
    text_prefix = names[0][: len(names[0]) - len(first.getPath())]
    uri_prefix = first.toString()[: len(first.toString()) - len(first.getRawPath())]

    def uri(i: int, name: str) -> str:
        rest = name[len(text_prefix) :]
        if spelled_here and name.startswith(text_prefix) and rest.isascii():
            return uri_prefix + _uri_path(rest)
        return paths[i].toUri().toString()

    spelled_here = True
    if uri(0, names[0]) != first.toString():
        log.warning(
            "%s: Hadoop spells %r as %r, not as list_files would; asking Hadoop file by file",
            root,
            names[0],
            first.toString(),
        )
        spelled_here = False
    # Hidden and left alone are judged below the root (whose own folders may start with `_`), in
    # the listing's spelling; a name spelled otherwise (another scheme's spelling of the same
    # bucket) by what follows the root's path in it, else by its own name alone.
    qualified = fs.makeQualified(path)
    below = qualified.toString().rstrip("/") + "/"
    below_path = qualified.toUri().getPath().rstrip("/") + "/"

    def relative(name: str) -> str:
        if name.startswith(below):
            return name[len(below) :]
        authority = name.find("//")  # the root's path is sought after the scheme and bucket
        at = name.find(below_path, authority + 2 if authority >= 0 else 0)
        return name[at + len(below_path) :] if at >= 0 else name.rsplit("/", 1)[-1]

    suffixes = tuple(s.lower() for s in ((suffix,) if isinstance(suffix, str) else suffix))
    visible = [i for i, name in enumerate(names) if not hidden(relative(name))]
    shown = [i for i in visible if not left_alone(relative(names[i]), leave_alone)]
    wanted = [i for i in shown if names[i].lower().endswith(suffixes)]
    stamps = _stamps(spark, local, statuses, names, wanted)
    known = known or {}
    found = []
    for i in wanted:
        spelled = uri(i, names[i])
        held = key(spelled)
        if held in known and known[held] in (None, stamps[i]):
            continue
        found.append(LandingFile(spelled, names[i], *stamps[i]))
    ignored = sorted(uri(i, names[i]) for i in sorted(set(shown) - set(wanted)))
    return Listing(sorted(found), ignored, len(visible) - len(shown))


# Characters Hadoop's glob gives a meaning to, and its escape character (all legal in a file
# name and an S3 key): Spark expands any path holding one as a pattern.
_GLOB = re.compile(r"([\\\[\]{}*?])")


def spark_path(path: str) -> str:
    """A file's Hadoop path as Spark's readers are given it: each glob character escaped, so
    the path names the file itself (`a[1].csv` as a pattern matches `a1.csv` and not itself;
    `{a,b}` names two other files). Spark reports the file's own path in `_metadata.file_path`."""
    return _GLOB.sub(r"\\\1", path)


# FileStatus.toString()'s length and modification time (Hadoop 3: "...; length=N; replication=R;
# blocksize=B; modification_time=M; ..."), for an object store's statuses in one crossing.
_STATUS_STAMP = re.compile(r"; isDirectory=false; length=(\d+); .*?; modification_time=(\d+);")


def _stamps(
    spark: SparkSession, local: bool, statuses, names: list[str], wanted: list[int]
) -> dict[int, Stamp]:
    """(size, modified_ms) of the files at `wanted` indexes. A local file is asked of the OS
    (Hadoop's local status would be a py4j round trip per value); an object store's statuses
    cross as one string (their toString reads no permissions, unlike a local status's); any
    other shape is asked of Hadoop file by file."""
    if not wanted:
        return {}
    if local:
        try:
            return {i: _os_stamp(names[i]) for i in wanted}
        except OSError as exc:
            log.warning("local listing: %s; asking Hadoop file by file", exc)
    else:
        texts = _strings(spark, statuses)
        parsed = [_STATUS_STAMP.search(t) for t in texts] if len(texts) == len(names) else []
        if parsed and all(parsed[i] for i in wanted):
            return {i: (int(parsed[i].group(1)), int(parsed[i].group(2))) for i in wanted}  # type: ignore[union-attr]
    return {i: (statuses[i].getLen(), statuses[i].getModificationTime()) for i in wanted}


def _os_stamp(name: str) -> Stamp:
    """A local file's stamp by its Path.toString() ("file:/a/b"), as Hadoop gives it (ms)."""
    stat = os.stat(_os_path(name))
    return stat.st_size, stat.st_mtime_ns // 1_000_000


def _listed_files(spark: SparkSession, fs, path) -> tuple:
    """(FileStatus[], Path[], Path.toString() of each) of every file below `path`: Hadoop's
    recursive listFiles, one flat listing on an object store."""
    gateway = spark.sparkContext._gateway  # type: ignore[union-attr]
    # py4j passes only Object[] to generic array parameters: copy through Object[] both ways.
    statuses = _java(spark, "org.apache.hadoop.util.functional.RemoteIterators").toArray(
        fs.listFiles(path, True), gateway.new_array(_java(spark, "java.lang.Object"), 0)
    )
    count = len(statuses)
    if not count:
        return statuses, statuses, []
    typed = _java(spark, "java.util.Arrays").copyOf(
        statuses, count, gateway.new_array(_java(spark, "org.apache.hadoop.fs.FileStatus"), 0).getClass()
    )
    paths = _java(spark, "org.apache.hadoop.fs.FileUtil").stat2Paths(typed)
    return typed, paths, _names(spark, paths)


def _local_files(spark: SparkSession, fs, path) -> tuple:
    """What _listed_files gives, for a local folder: listFiles reads each file's permissions
    through a forked process there (~15 ms a file), listStatus does not. Listing every entry
    again descends a level: a file lists as itself, a folder as its entries; once the listing
    comes back unchanged, only files are left."""
    file_util = _java(spark, "org.apache.hadoop.fs.FileUtil")
    statuses = fs.listStatus(path)
    paths = file_util.stat2Paths(statuses)
    names = _names(spark, paths)
    while names:
        below = fs.listStatus(paths)
        below_paths = file_util.stat2Paths(below)
        below_names = _names(spark, below_paths)
        if below_names == names:
            break
        statuses, paths, names = below, below_paths, below_names
    return statuses, paths, names


def _names(spark: SparkSession, paths) -> list[str]:
    """Path.toString() of each of a Path[], in one crossing (a name holding a newline: one
    crossing a path)."""
    names = _strings(spark, paths)
    if len(names) != len(paths):
        names = [p.toString() for p in paths]
    return names


def _strings(spark: SparkSession, objects) -> list[str]:
    """toString() of each of a Java array's objects, in one crossing, split on newlines (more
    strings than objects when one holds a newline: the caller checks the count)."""
    count = len(objects)
    if not count:
        return []
    # py4j passes a typed array to no Object[] parameter: copied into an Object[] first.
    untyped = spark.sparkContext._gateway.new_array(_java(spark, "java.lang.Object"), count)  # type: ignore[union-attr]
    _java(spark, "java.lang.System").arraycopy(objects, 0, untyped, 0, count)
    return _java(spark, "org.apache.commons.lang3.StringUtils").join(untyped, "\n").split("\n")


def _decompressed(spark: SparkSession, location: str):
    """A file's input stream, decompressed as Spark would read it (by its name: `.gz`)."""
    path, fs = _fs(spark, location)
    stream = fs.open(path)
    codec = _java(spark, "org.apache.hadoop.io.compress.CompressionCodecFactory")(
        spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    ).getCodec(path)
    if codec is None:
        return stream
    try:
        return codec.createInputStream(stream)
    except Exception:
        stream.close()
        raise


def _read_line(spark: SparkSession, stream) -> str | None:
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    return jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8")).readLine()


def first_line(spark: SparkSession, location: str) -> str | None:
    """The first line of a text file (a CSV header), decompressed as Spark would read it
    (`.gz`), or None for an empty file. Invalid UTF-8 reads as U+FFFD."""
    stream = _decompressed(spark, location)
    try:
        return _read_line(spark, stream)
    finally:
        stream.close()


def head_and_first_line(spark: SparkSession, location: str, n: int) -> tuple[bytes, str | None]:
    """The first `n` bytes (fewer in a shorter file) and the first line (as `first_line` reads
    it) of a text file, decompressed as Spark would read it, from one stream: the bytes tell a
    file that is not text at all (gzip under a .csv name, UTF-16) by its signature."""
    stream = _java(spark, "java.io.BufferedInputStream")(_decompressed(spark, location))
    try:
        stream.mark(n)
        head = bytes(stream.readNBytes(n))
        stream.reset()
        return head, _read_line(spark, stream)
    finally:
        stream.close()


def first_bytes(spark: SparkSession, location: str, n: int) -> bytes:
    """The first `n` bytes (fewer in a shorter file), decompressed as Spark would read it."""
    stream = _decompressed(spark, location)
    try:
        return bytes(stream.readNBytes(n))
    finally:
        stream.close()


def head_and_tail(spark: SparkSession, location: str, size: int, n: int) -> tuple[bytes, bytes]:
    """The first and the last `n` bytes of a file of `size` bytes (two small reads, e.g. to
    check Parquet's magic numbers without reading the file)."""
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    io = jvm.org.apache.commons.io.IOUtils
    path, fs = _fs(spark, location)
    stream = fs.open(path)
    try:
        head = bytes(io.toByteArray(stream, min(n, size)))
        stream.seek(max(size - n, 0))
        return head, bytes(io.toByteArray(stream, min(n, size)))
    finally:
        stream.close()


def sha256(spark: SparkSession, location: str) -> str:
    """SHA-256 of a file's bytes, hex, streamed in the JVM (the file never crosses into Python)."""
    return _sha256_and_size(spark, location)[0]


def _sha256_and_size(spark: SparkSession, location: str) -> tuple[str, int]:
    """`sha256` and the number of bytes it read."""
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    digest = jvm.java.security.MessageDigest.getInstance("SHA-256")
    path, fs = _fs(spark, location)
    if fs.getScheme() == "file":
        # The bytes as they are: the local checksum layer would open `.<name>.crc` beside the
        # file, a path Hadoop cannot even form for a name holding ':' (rejected for it).
        fs = fs.getRawFileSystem()
    stream = jvm.java.security.DigestInputStream(fs.open(path), digest)
    try:
        size = int(jvm.org.apache.commons.io.IOUtils.consume(stream))
    finally:
        stream.close()
    return bytes(digest.digest()).hex(), size


DIGEST_THREADS = 8  # files hashed at once: a local file is read by Python, another streamed in the JVM


class Hashes(NamedTuple):
    """`sha256_of`'s answer: each file's SHA-256 by URI, and the files whose size changed since
    they were listed (hashed bytes the listing's size and time do not describe)."""

    digests: dict[str, str]
    changed: tuple[LandingFile, ...] = ()


def sha256_of(spark: SparkSession, files: Sequence[LandingFile]) -> Hashes:
    """SHA-256 of each file's bytes by its URI: a local file read by Python (a py4j round trip
    per chunk would cost more than the hashing), any other streamed in the JVM (`sha256`); a
    few at a time, the reads waiting on storage more than on the CPU. A file gone since it was
    listed has none: its read, not its hash, reports it. A file of another size than listed
    (a writer still appending, or a file replaced) is `changed`, with no hash: the caller leaves
    it for a later listing, since recording this hash beside the listed size and time would
    describe bytes nobody read (a file listed empty, then completed, would pass for ingested)."""
    if not files:
        return Hashes({})
    _, fs = _fs(spark, files[0].path)
    local = fs.getScheme() == "file"

    # Gone since the listing: no hash, and the read names the file. Any other error (a
    # throttled store) fails the step, to be retried, rather than pass a copy for a rewrite.
    def digest(f: LandingFile) -> tuple[str, int] | None:
        try:
            if not local:
                return _sha256_and_size(spark, f.path)
            with open(_os_path(f.path), "rb") as stream:
                return hashlib.file_digest(stream, "sha256").hexdigest(), stream.tell()
        except FileNotFoundError:
            pass
        except Py4JJavaError as exc:
            if exc.java_exception.getClass().getName() != "java.io.FileNotFoundException":
                raise
        log.warning("%s: gone since it was listed; not hashed", f.uri)
        return None

    with ThreadPoolExecutor(min(DIGEST_THREADS, len(files))) as pool:
        found = list(zip(files, pool.map(digest, files), strict=True))
    changed = tuple(f for f, value in found if value is not None and value[1] != f.size)
    for f in changed:
        log.warning(
            "%s: %d bytes when listed, another size when hashed (still being written, or replaced); "
            "left for the next run",
            f.uri,
            f.size,
        )
    return Hashes({f.uri: value[0] for f, value in found if value is not None and f not in changed}, changed)


def _os_path(name: str) -> str:
    """A local file's path by its Path.toString() ("file:/a/b")."""
    return name[len("file:") :] if name.startswith("file:/") else name


def read_text(spark: SparkSession, location: str) -> str:
    """A small text file (a streaming checkpoint entry), whole, as UTF-8. A local one is read by
    `pipeline.files`: through the JVM a read costs ~40 ms of py4j round trips (an idle stream
    step reads its checkpoint's log at every run)."""
    path, fs = _fs(spark, location)
    local = _local(fs, path)
    if local is not None:
        text = LocalFiles().read_text(local)
        if text is None:
            raise FileNotFoundError(location)
        return text
    stream = fs.open(path)
    try:
        return bytes(_java(spark, "org.apache.commons.io.IOUtils").toByteArray(stream)).decode("utf-8")
    finally:
        stream.close()


def write_text(spark: SparkSession, location: str, text: str) -> None:
    """Write (replace) a small text file, e.g. the run state under <lake>/_ops or a stream's
    checkpoint log; a local one atomically (`pipeline.files`: a temporary file, then a rename)."""
    path, fs = _fs(spark, location)
    local = _local(fs, path)
    if local is not None:
        LocalFiles().write_text(local, text)
        return
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
