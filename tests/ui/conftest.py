"""Fixtures for the page's tests."""

from __future__ import annotations

import gc
import sys

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ingest.context import open_songspace
from ingest.pipeline import Ingestor
from tests.conftest import CITY_LYRICS, make_cover, store_settings
from tests.fakes import HOSTILE_TITLE
from tests.ui.apptest import APP


@pytest.fixture
def catalogue_settings(tmp_path, themed_rows, write_catalogue):
    """An embedded store holding the themed songs and one with a hostile title."""
    settings = store_settings("edge", tmp_path)
    hostile = tmp_path / "hostile.png"
    hostile.write_bytes(make_cover((250, 0, 0), 5))
    rows = themed_rows + [{"id": "x", "title": HOSTILE_TITLE, "artist": "Mallory", "genre": "city", "lyrics": CITY_LYRICS[3] + "\nsecond line", "cover_path": hostile.name}]
    songspace = open_songspace(settings)
    Ingestor(songspace.index, songspace.embedder, songspace.fetcher, progress=False).run(write_catalogue(rows))
    songspace.close()
    return settings


@pytest.fixture(autouse=True)
def main_module_kept():
    """AppTest makes the page's script this process's __main__ and leaves it there: worker processes
    started later in the run (ingestion's) would start by running the page."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture
def app():
    """The page under AppTest, with nothing cached from another test (each opens its own store)."""
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    yield at
    st.cache_resource.clear()
    gc.unfreeze()  # the page froze this process's heap; the next tests' garbage must be collected
