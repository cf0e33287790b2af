"""pipeline.storage.list_files: the listing's URI of a landing file is the key Spark's
`_metadata.file_path` gives the same file (through file_key), whatever its name holds, in a
folder and in a bucket; so the ledger finds an ingested file and it is ingested once. And
`sha256_of`: each file's hash by its bytes, in a folder and in a bucket."""

from __future__ import annotations

import hashlib

import pytest
from pyspark.sql import functions as F

from pipeline import storage
from pipeline.storage import (
    LandingFile,
    LandingKeys,
    file_key,
    list_files,
    list_landing,
    location_uri,
    spark_path,
)

BUCKET = "lakehouse-storage-test"
# A space, '%', '#', non-ASCII, characters a URI keeps as they are, glob characters, and a plain
# name.
NAMES = [
    "a b.csv",
    "100%.csv",
    "x#1.csv",
    "café_ü.csv",
    "k=v,+@-1.csv",
    "plain.csv",
    "date=2026-07-01/z.csv",
    "g[1].csv",
    "g_{a,b}.csv",
    "g*.csv",
    "g?.csv",
    "g\\x.csv",
]


def hadoop_uris(spark, root: str) -> dict[str, tuple[str, int, int]]:
    """Hadoop's own spelling and status, file by file: `Path.toUri().toString()` ->
    (Path.toString(), size, modification time)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(root)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    out, it = {}, fs.listFiles(path, True)
    while it.hasNext():
        status = it.next()
        out[status.getPath().toUri().toString()] = (
            status.getPath().toString(),
            status.getLen(),
            status.getModificationTime(),
        )
    return out


def spark_keys(spark, root: str) -> set[str]:
    df = spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.csv").text(root)
    return {file_key(r[0]) for r in df.select(F.col("_metadata.file_path")).distinct().collect()}


def check_listing(spark, root: str) -> None:
    listed = list_files(spark, root, ".csv")
    assert len(listed) == len(NAMES)
    hadoop = hadoop_uris(spark, root)
    # Byte-identical to Hadoop's spelling (uri, path form), its size and modification time, and
    # to Spark's key of each file.
    assert {f.uri: (f.path, *f.stamp) for f in listed} == {
        u: v for u, v in hadoop.items() if u.endswith(".csv") and "_hidden" not in u
    }
    assert {file_key(f.uri) for f in listed} == spark_keys(spark, root)
    # Spark given the files' paths reads each file itself (glob characters escaped, not taken for
    # a pattern), and reports it under the listing's key.
    read = spark.read.text([spark_path(f.path) for f in listed]).select(F.col("_metadata.file_path"), "value")
    assert {(file_key(r[0]), r[1]) for r in read.collect()} == {
        (file_key(f.uri), f.path.split(root.rstrip("/") + "/", 1)[-1]) for f in listed
    }
    # A known file is left out: what the ledger holds is not listed as new again.
    known = {file_key(f.uri): f.stamp for f in listed if "#" in f.path or "%" in f.path}
    again = list_files(spark, root, ".csv", known)
    assert sorted(f.path.rsplit("/", 1)[-1] for f in again) == sorted(
        n.rsplit("/", 1)[-1] for n in NAMES if "#" not in n and "%" not in n
    )
    # Known with stamps: a file whose stamp differs from the one known is listed (rewritten),
    # one known without a stamp is not.
    stale = {file_key(f.uri): (f.size + ("#" in f.path), f.modified_ms) for f in listed}
    (rewritten,) = list_files(spark, root, ".csv", stale)
    assert rewritten.path.endswith("x#1.csv")
    assert list_files(spark, root, ".csv", dict.fromkeys(stale)) == []
    # Bronze's keys, below the landing root (here the root's parent): Spark's and the listing's
    # spelling of a file give one key, and a file known by it is not listed.
    parent, folder = root.rstrip("/").rsplit("/", 1)
    keys = LandingKeys(location_uri(spark, parent), folder)
    assert {keys(f.uri) for f in listed} == {keys(k) for k in spark_keys(spark, root)}
    assert all(keys(f.uri).startswith(f"{folder}/") for f in listed)
    assert list_files(spark, root, ".csv", {keys(f.uri): f.stamp for f in listed}, keys) == []


def test_landing_keys_are_below_the_landing_root_wherever_the_lake_was():
    keys = LandingKeys("file:///data/lake/landing", "crm/accounts")
    assert keys("file:/data/lake/landing/crm/accounts/d=1/a%20b.csv") == "crm/accounts/d=1/a%20b.csv"
    assert keys("file:///data/lake/landing/crm/old/a.csv") == "crm/old/a.csv"  # this root
    assert keys("crm/accounts/a.csv") == "crm/accounts/a.csv"  # relative already
    # Absolute keys of another root (the lake moved or was copied): from the dataset's folder on,
    # at its first place in the path.
    assert keys("file:///old/lake/landing/crm/accounts/a.csv") == "crm/accounts/a.csv"
    assert keys("s3a://other-bucket/dr/landing/crm/accounts/x/a.csv") == "crm/accounts/x/a.csv"
    nested = "file:///old/landing/crm/accounts/landing/crm/accounts/a.csv"
    assert keys(nested) == "crm/accounts/landing/crm/accounts/a.csv"
    # Another root and another folder: no key a listed file has (ingested again, never lost).
    assert keys("file:///old/lake/landing/crm/other/a.csv") == "file:///old/lake/landing/crm/other/a.csv"
    bucket = LandingKeys("s3://lake-bucket/landing", "snowflake/orders")
    assert bucket("s3://lake-bucket/landing/snowflake/orders/a.parquet") == "snowflake/orders/a.parquet"
    assert bucket("s3://dr-bucket/landing/snowflake/orders/a.parquet") == "snowflake/orders/a.parquet"


def test_odd_file_names_are_keyed_as_spark_reads_them_in_a_folder(spark, tmp_path):
    for name in NAMES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"{name}\n")
    (tmp_path / "_hidden.csv").write_text("x\n")
    (tmp_path / "notes.txt").write_text("x\n")
    check_listing(spark, str(tmp_path))


def in_bucket(spark, s3_endpoint, bucket: str, prefix: str, files: dict[str, bytes]) -> str:
    """`files` (name -> body) put below `prefix` of a new bucket that the session reaches; the
    folder's s3a:// URI."""
    s3_endpoint.create_bucket(bucket)
    client = s3_endpoint.client()
    for name, body in files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=body)
    s3_endpoint.configure_spark(spark, bucket)
    return f"s3a://{bucket}/{prefix}"


def test_odd_file_names_are_keyed_as_spark_reads_them_in_a_bucket(spark, s3_endpoint):
    names = [*NAMES, "_hidden.csv", "notes.txt"]
    check_listing(
        spark, in_bucket(spark, s3_endpoint, BUCKET, "landing", {n: f"{n}\n".encode() for n in names})
    )
    # An object store's sizes and times cross in one string, parsed from FileStatus.toString()
    # (else: two py4j round trips a file, every run, for every file ever landed).
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(f"s3a://{BUCKET}/landing")
    status = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).listFiles(path, True).next()
    found = storage._STATUS_STAMP.search(status.toString())
    assert found and (int(found[1]), int(found[2])) == (status.getLen(), status.getModificationTime())


def test_a_folder_tree_lists_the_files_hadoops_recursive_listing_finds(spark, tmp_path):
    """Folders at several depths, one named like a data file, empty ones: exactly the files (no
    folder) that Hadoop's recursive listing finds, as a local folder is listed level by level."""
    for name in ["top.csv", "a/b/c/deep.csv", "a/side.csv", "dir.csv/inner.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"{name}\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a" / "b" / "empty.csv").mkdir()
    listed = list_files(spark, str(tmp_path), ".csv")
    assert {f.uri: (f.path, *f.stamp) for f in listed} == hadoop_uris(spark, str(tmp_path))
    assert len(listed) == 4


def test_a_missing_root_lists_nothing(spark, tmp_path):
    assert list_files(spark, str(tmp_path / "absent"), ".csv") == []


@pytest.mark.parametrize("name", ["line\nbreak.csv"])
def test_a_newline_in_a_name_still_lists_every_file_in_hadoop_spelling(spark, tmp_path, name):
    (tmp_path / name).write_text("x\n")
    (tmp_path / "b.csv").write_text("y\n")
    listed = list_files(spark, str(tmp_path), ".csv")
    hadoop = hadoop_uris(spark, str(tmp_path))
    assert {f.uri: (f.path, *f.stamp) for f in listed} == hadoop


# Below the listed root: True, listed; False, matching no suffix (reported); None, hidden.
TREE = {
    "a.csv": True,
    "B.CSV": True,
    "c.Csv.GZ": True,
    "date=2026-10-01/d.csv": True,
    "event_date=__HIVE_DEFAULT_PARTITION__/e.csv": True,
    "_c=1/f.csv": True,
    "_temporary/0/_temporary/attempt_1/t.csv": None,
    ".hidden/h.csv": None,
    "sub/.x/y.csv": None,
    "_x.csv": None,
    "g.csv._COPYING_": None,
    "README.txt": False,
    "x.csv.tmp": False,
    "sub/notes.md": False,
}


def check_tree(spark, root: str) -> None:
    listing = list_landing(spark, root, (".csv", ".csv.gz"))
    assert sorted(f.uri.split("/landing/", 1)[1] for f in listing.files) == sorted(
        n for n, shown in TREE.items() if shown
    )
    assert sorted(u.split("/landing/", 1)[1] for u in listing.ignored) == sorted(
        n for n, shown in TREE.items() if shown is False
    )
    assert list_files(spark, root, (".csv", ".csv.gz")) == listing.files


def test_hidden_folders_are_skipped_and_a_suffix_matches_in_any_case_in_a_folder(spark, tmp_path):
    """A writer's `_temporary/` attempt and a `.hidden/` folder are skipped as `_x.csv` is, below
    the listed root (whose own folders may start with `_`); partition folders are read; `.CSV` is
    a `.csv`; what matches no suffix is named, not dropped without a word."""
    root = tmp_path / "_lake" / "landing"
    for name in TREE:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x\n")
    check_tree(spark, str(root))


def test_hidden_folders_are_skipped_and_a_suffix_matches_in_any_case_in_a_bucket(spark, s3_endpoint):
    check_tree(
        spark, in_bucket(spark, s3_endpoint, f"{BUCKET}-tree", "_tree/landing", dict.fromkeys(TREE, b"x\n"))
    )


# A checkpoint folder's files: Hadoop's `.crc` and a writer's temporary file are hidden.
CHECKPOINT = {name: b"x" for name in ["0", "1", "10", ".1.crc", "_temp", "a b"]} | {"2.compact": b"v1\n{}"}


def check_folder_names(spark, root: str) -> None:
    assert storage.folder_names(spark, root) == ["0", "1", "10", "2.compact", "a b"]
    assert storage.folder_names(spark, f"{root}/absent") == []
    assert storage.read_text(spark, f"{root}/2.compact") == "v1\n{}"


def test_folder_names_and_read_text_of_a_checkpoint_folder(spark, tmp_path):
    """A stream's checkpoint folder as the idle step reads it (locally without the JVM): the
    entries' names, hidden ones aside (Hadoop's `.crc` files), a missing folder as empty."""
    for name, body in CHECKPOINT.items():
        (tmp_path / name).write_bytes(body)
    check_folder_names(spark, str(tmp_path))


def test_folder_names_and_read_text_of_a_checkpoint_folder_in_a_bucket(spark, s3_endpoint):
    check_folder_names(spark, in_bucket(spark, s3_endpoint, f"{BUCKET}-checkpoint", "cp", CHECKPOINT))


def check_hashes(spark, root: str, bodies: dict[str, bytes], gone: str, grown: str) -> None:
    """sha256_of gives each listed file the SHA-256 of its bytes, computed here independently;
    a file removed after the listing gets none; one written to after it (a writer still at work)
    gets none either and is `changed`: its hash would describe bytes the listing did not."""
    listed = list_files(spark, root)
    assert len(listed) == len(bodies)
    name = {f.uri: next(n for n in bodies if f.path.endswith("/" + n)) for f in listed}
    remove(spark, next(f for f in listed if name[f.uri] == gone))
    still_writing = next(f for f in listed if name[f.uri] == grown)
    storage.write_text(spark, still_writing.path, bodies[grown].decode() + "more rows\n")
    found = storage.sha256_of(spark, listed)
    assert found.digests == {
        uri: hashlib.sha256(bodies[n]).hexdigest() for uri, n in name.items() if n not in (gone, grown)
    }
    assert found.changed == (still_writing,)


def remove(spark, f) -> None:
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(f.path)
    assert path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, False)


HASHED = {name: f"{name}\n".encode() * (i + 1) for i, name in enumerate(NAMES)} | {
    "gone.csv": b"x\n",
    "growing.csv": b"id\n1\n",
}


def test_files_are_hashed_by_their_bytes_in_a_folder(spark, tmp_path):
    for name, body in HASHED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(body)
    check_hashes(spark, str(tmp_path), HASHED, "gone.csv", "growing.csv")
    # Any other error fails the step (to be retried): a copy must not pass for a rewrite.
    folder = LandingFile(f"file://{tmp_path}", f"file:{tmp_path}", 0, 0)
    with pytest.raises(IsADirectoryError):
        storage.sha256_of(spark, [folder])


def test_files_are_hashed_by_their_bytes_in_a_bucket(spark, s3_endpoint):
    check_hashes(
        spark,
        in_bucket(spark, s3_endpoint, f"{BUCKET}-hashed", "landing", HASHED),
        HASHED,
        "gone.csv",
        "growing.csv",
    )
