"""The catalogue's reader names (one list) and per-dataset CSV dialects (`options:`), as a user
writing config/datasets.yaml meets them: refused typos name the file, the key and what is allowed."""

from __future__ import annotations

import pytest

from pipeline.bronze.readers import READERS as READER_FUNCTIONS
from pipeline.catalog import FILE_READERS, READERS, CsvOptions, load_catalog
from pipeline.schemas import json_schema
from pipeline.settings import ConfigError

ENTRY = (
    "datasets:\n  tickets:\n    description: d\n    source_system: helpdesk\n    landing: helpdesk/tickets\n"
)


def catalog_with(tmp_path, lines: str):
    path = tmp_path / "datasets.yaml"
    path.write_text(ENTRY + "".join(f"    {line}\n" for line in lines.splitlines()))
    return load_catalog(path)


def test_one_list_of_reader_names_gives_the_literal_the_schema_and_the_functions():
    schema = json_schema("datasets")
    assert schema["$defs"]["DatasetSpec"]["properties"]["reader"]["enum"] == list(READERS)
    assert set(READER_FUNCTIONS) == set(FILE_READERS) and set(FILE_READERS) < set(READERS)
    assert READER_FUNCTIONS["csv"].__name__ == "read_csv"


def test_a_csv_dialect_is_read_from_the_catalogue(tmp_path):
    spec = catalog_with(tmp_path, "reader: csv\noptions: {sep: ';', encoding: ISO-8859-1, quote: ''}")[
        "tickets"
    ]
    assert spec.csv == CsvOptions(sep=";", encoding="ISO-8859-1", quote="")
    assert catalog_with(tmp_path, "reader: csv")["tickets"].csv == CsvOptions()  # RFC 4180, UTF-8


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            "reader: csv\noptions: {delimiter: ';'}",
            "datasets.tickets.options: unknown key(s) delimiter; allowed: sep, quote, escape, encoding, header, columns",
        ),
        (
            "reader: csv\noptions: {sep: ';;'}",
            "datasets.tickets.options: sep: expected one ASCII character, got ';;'",
        ),
        (
            "reader: csv\noptions: {sep: '§'}",  # two bytes in UTF-8: Spark would split inside it
            "datasets.tickets.options: sep: expected one ASCII character, got '§'",
        ),
        (
            "reader: csv\noptions: {encoding: utf-16}",
            "datasets.tickets.options.encoding: expected one of UTF-8|ISO-8859-1, got 'utf-16'",
        ),
        ("reader: csv\noptions: {header: false}", "datasets.tickets.options: columns: name the fields"),
        (  # every file would be refused for it, and stay refused after the fix
            "reader: csv\noptions: {header: false, columns: [id, _Batch_Id]}",
            "datasets.tickets.options: columns: column(s) '_Batch_Id' have the name of a column bronze adds",
        ),
        (
            "reader: parquet\noptions: {sep: ';'}",
            "datasets.tickets: options: only the csv reader takes options",
        ),
        ("reader: xml", "datasets.tickets.reader: expected one of csv|parquet|fx_json|kafka, got 'xml'"),
    ],
)
def test_a_wrong_option_is_refused_naming_the_file_and_the_key(tmp_path, lines, message):
    with pytest.raises(ConfigError) as caught:
        catalog_with(tmp_path, lines)
    assert str(caught.value).startswith(f"{tmp_path / 'datasets.yaml'}: "), str(caught.value)
    assert message in str(caught.value)


def test_the_published_schema_offers_the_dialect_to_an_editor():
    options = json_schema("datasets")["$defs"]["CsvOptions"]
    assert list(options["properties"]) == ["sep", "quote", "escape", "encoding", "header", "columns"]
    assert options["additionalProperties"] is False
    assert options["properties"]["encoding"]["enum"] == ["UTF-8", "ISO-8859-1"]
