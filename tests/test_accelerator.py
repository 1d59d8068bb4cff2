"""The bulk merge's C accelerator (src/profilestore/_bulkmerge.c) against its Python original
(bulkmerge.merge_attributes): for any stored attributes and any row, the same text, byte for byte,
or None where it leaves the text to Python. CI runs the whole suite twice, with the accelerator and
with PROFILESTORE_ACCELERATOR=off; it must be built there, or the first run would test nothing new."""

import json
import os

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profilestore import bulkmerge

try:
    from profilestore._bulkmerge import merge_attributes as merge_in_c
except ImportError:  # not built (no compiler): the suite runs on the Python merge alone, except under CI
    merge_in_c = None
pytestmark = pytest.mark.skipif(
    merge_in_c is None and os.environ.get("CI") != "true", reason="the C accelerator is not built"
)

names = st.one_of(st.sampled_from(["city", "tier", "a", "b", "é", "名前"]), st.text(max_size=5))
texts = st.text(max_size=8)  # any code point but lone surrogates, controls and quotes included
stored_attributes = st.dictionaries(names, st.tuples(texts, st.integers(0, 2**53), st.integers(0, 40)), max_size=6)
rows = st.dictionaries(names, st.one_of(st.just(""), texts), max_size=6)


@settings(max_examples=1000, deadline=None, derandomize=os.environ.get("CI") == "true")
@given(stored=stored_attributes, values=rows, order=st.integers(0, 40))
def test_the_c_merge_writes_what_the_python_merge_writes(stored, values, order):
    text = orjson.dumps({name: list(a) for name, a in stored.items()}).decode()
    in_python = bulkmerge.merge_attributes(text, values, 1_795_000_000_000, order)
    in_c = merge_in_c(text, values, 1_795_000_000_000, order)
    if in_c is None:  # left to Python: only for a name that orjson writes with an escape
        assert any(orjson.dumps(name).decode()[1:-1] != name for name in stored)
        return
    assert in_c == in_python
    assert (in_c is text) == (in_python is text)  # "nothing changed" said the same way


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"a": ["x", 1, 2]}),  # spaces after separators
        json.dumps({"a": ["é", 1, 2]}),  # \u00e9, which orjson does not write
        '{"a":["x",1.5,2]}',
        '{"a":["x",1,2],}',
        '{"a":["x",1,2]',
        '{"a":["x",01,2]}',
        '{"a":["x\\/",1,2]}',
        '["x",1,2]',
        "",
    ],
)
def test_text_orjson_would_not_write_is_left_to_python(text):
    assert merge_in_c(text, {"a": "y"}, 5, 6) is None


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="only CI insists on the accelerator")
def test_the_accelerator_is_built_and_used_under_ci():
    assert merge_in_c is not None
    assert bulkmerge.accelerated is (None if os.environ.get("PROFILESTORE_ACCELERATOR") == "off" else merge_in_c)
