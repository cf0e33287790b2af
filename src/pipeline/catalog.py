"""The dataset catalogue (`config/datasets.yaml`): where each source lands and how it is read.

Interpreted once here; a new source is a catalogue entry, a reader and (later) a contract.
`READERS` is the one list of reader names: the `reader` field's literal (so its JSON Schema) is
built from it, and `pipeline.bronze.readers` finds each file format's function by it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from pipeline.settings import ConfigError, Settings, SourceSettings, load_yaml, parse_typed

# The file formats are read by `read_<name>` in pipeline.bronze.readers; the streams (kafka) by
# their own bronze job (pipeline.jobs.bronze).
FILE_READERS = ("csv", "parquet", "fx_json")
STREAM_READERS = ("kafka",)
READERS = FILE_READERS + STREAM_READERS
ReaderName = Literal[READERS]  # built from the tuple: one list of names


def _one_char(key: str, value: str, empty_ok: bool = False) -> None:
    # ASCII: Spark splits records on bytes, so a multi-byte delimiter would split inside characters.
    if (len(value) != 1 or not value.isascii()) and not (empty_ok and value == ""):
        allowed = "one ASCII character" + (" or '' (none)" if empty_ok else "")
        raise ConfigError(f"{key}: expected {allowed}, got {value!r}")


# The columns bronze adds to every row (pipeline.bronze.audit). A source column of one of these
# names (in any case) would be dropped, overwritten or made ambiguous: its file is refused.
AUDIT_COLUMNS = (
    "_ingestion_ts",
    "_source_system",
    "_source_file",
    "_batch_id",
    "_corrupt_record",
    "_parse_error",
)


def audit_clash(columns: Iterable[str]) -> str | None:
    """Which of `columns` take the name of a bronze audit column, said for an error; or None."""
    reserved = {a.lower() for a in AUDIT_COLUMNS}
    clash = [c for c in columns if c.lower() in reserved]
    if not clash:
        return None
    return (
        f"column(s) {', '.join(map(repr, clash))} have the name of a column bronze adds to every row "
        f"({', '.join(AUDIT_COLUMNS)})"
    )


@dataclass(frozen=True)
class CsvOptions:
    """The CSV dialect of one source (reader csv); the defaults are RFC 4180 with a header."""

    sep: str = ","  # the field delimiter, one character (e.g. ';' or a tab)
    quote: str = '"'  # the quote character; '' reads quotes as data
    escape: str = '"'  # escapes a quote inside a quoted field ('"' doubles it: "say ""hi""")
    # The files' character set, one Spark's CSV reader decodes. UTF-8 is read as bytes and checked
    # record by record (a record with invalid bytes is flagged); ISO-8859-1 (latin-1) has no invalid
    # bytes. A windows-1252 export reads as ISO-8859-1 but for its bytes 0x80-0x9F (e.g. the euro sign).
    encoding: Literal["UTF-8", "ISO-8859-1"] = "UTF-8"
    header: bool = True  # false: the files have no header line; `columns` names the fields
    columns: list[str] = field(default_factory=list)  # the field names, in order, when header is false

    def __post_init__(self) -> None:
        _one_char("sep", self.sep)
        _one_char("quote", self.quote, empty_ok=True)
        _one_char("escape", self.escape)
        if self.header == bool(self.columns):
            raise ConfigError(
                "columns: name the fields when header is false, and only then (a header names them)"
            )
        if clash := audit_clash(self.columns):  # else every file is refused, and stays refused
            raise ConfigError(f"columns: {clash}; name the fields otherwise")


@dataclass(frozen=True)
class DatasetSpec:
    source_system: str
    landing: str  # folder under <lake>/landing
    reader: ReaderName
    description: str
    file_suffix: str = ""
    key: list[str] = field(default_factory=list)
    partition_by: list[str] = field(default_factory=list)
    # The source column holding each record's data time; bronze steps report its max as
    # details["newest_data_at"] (freshness). Empty: the dataset reports no data time.
    event_time: str = ""
    # The CSV dialect (reader csv only): sep, quote, escape, encoding, header, columns.
    options: CsvOptions | None = None
    # Files in the landing folder that are no deliveries (a README, the exporter's own manifest):
    # glob patterns (`fnmatch`, any case; `*` crosses folders) of a file's path below the folder
    # or of its name. Such a file is not read and only counted (the step's `left_alone_files`);
    # any other file matching none of the dataset's suffixes is named in a warning at every run,
    # so a misnamed delivery does not vanish without a word. File readers only.
    ignore: list[str] = field(default_factory=list)
    name: str = ""

    def __post_init__(self) -> None:
        if self.ignore and self.reader not in FILE_READERS:
            raise ConfigError(
                f"ignore: the {self.reader} reader streams the files its file_suffix selects; "
                "ignore applies to file readers only"
            )
        for pattern in self.ignore:
            if not pattern.strip():
                raise ConfigError(
                    "ignore: a pattern is empty; name the files to leave alone (e.g. 'README*')"
                )
            # A pattern any delivery matches would leave every delivery unread, without a word.
            anything = (f"a{self.file_suffix}", f"z/9_20260701{self.file_suffix}")
            if all(fnmatch.fnmatchcase(name.lower(), pattern.lower()) for name in anything):
                raise ConfigError(
                    f"ignore: {pattern!r} matches any file ending in {self.file_suffix!r}, every "
                    "delivery; name the files that are no deliveries (e.g. 'README*', 'meta/*')"
                )
        if self.options is not None and self.reader != "csv":
            raise ConfigError(
                f"options: only the csv reader takes options (this dataset's reader is {self.reader})"
            )

    @property
    def csv(self) -> CsvOptions:
        """The CSV dialect: the entry's options, else the defaults."""
        return self.options or CsvOptions()


@dataclass(frozen=True)
class Catalog:
    datasets: dict[str, DatasetSpec]

    def __getitem__(self, name: str) -> DatasetSpec:
        try:
            return self.datasets[name]
        except KeyError:
            known = ", ".join(sorted(self.datasets))
            raise ConfigError(f"unknown dataset {name!r}; the catalogue has: {known}") from None

    def source(self, settings: Settings, name: str) -> SourceSettings:
        """Where `name`'s bronze step reads: `sources.<name>` of `settings`, its mode resolved
        for the dataset's reader (a stream's default, or a file dataset's)."""
        return settings.source(name, stream=self[name].reader in STREAM_READERS)


def load_catalog(path: Path) -> Catalog:
    try:
        raw = load_yaml(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the dataset catalogue: {exc}") from exc
    entries = raw.get("datasets") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{path}: expected a non-empty mapping under 'datasets'")
    datasets = {}
    for name, entry in entries.items():
        if isinstance(entry, dict) and "name" in entry:
            raise ConfigError(f"{path}: datasets.{name}.name: the name is the mapping key, remove it")
        spec = parse_typed(DatasetSpec, {**(entry or {}), "name": name}, str(path), f"datasets.{name}")
        datasets[name] = spec
    return Catalog(datasets)
