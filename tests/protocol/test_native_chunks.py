"""Native chunks: a resumed upload's chunks start anywhere and keep the boundaries of the whole
upload; the upload name and the uploadProgress messages are checked at the edge."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disco.protocol.errors import ProtocolError
from disco.protocol.framing import pack, unpack_message
from disco.protocol.messages import (
    UploadProgress,
    parse_federated,
    parse_upload_progress,
    post_weights,
    upload_progress,
)
from disco.protocol.native_chunks import chunk_payload, decode_chunk, encode_chunks

NAME = "0123456789abcdef0123456789abcdef"


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    sizes=st.lists(st.integers(0, 7), min_size=1, max_size=5),
    chunk_parameters=st.integers(1, 6),
    data=st.data(),
)
def test_a_resumed_upload_sends_the_rest_on_the_same_boundaries(
    sizes: list[int], chunk_parameters: int, data: st.DataObject
) -> None:
    weights = [np.arange(size, dtype=np.float32) + 100 * index for index, size in enumerate(sizes)]
    flat = np.concatenate(weights)
    total = int(flat.size)
    start = data.draw(st.integers(0, total))
    whole = list(encode_chunks(weights, 4 * chunk_parameters, upload=NAME))
    rest = list(encode_chunks(weights, 4 * chunk_parameters, upload=NAME, start=start))
    chunks = [decode_chunk(unpack_message(pack(post_weights(p, 0)))["weights"]) for p in rest]
    if total and start == total:
        assert chunks == []
        return
    assert chunks[0].offset == start and chunks[-1].last
    assert all(c.upload == NAME and c.total == total for c in chunks)
    sent = np.concatenate([c.values for c in chunks]) if total else np.empty(0, np.float32)
    assert sent.tolist() == flat[start:].tolist()
    boundaries = {p["chunk"]["offset"] for p in whole}
    assert all(c.offset in boundaries for c in chunks[1:])  # after the first, the same cuts


def test_a_start_outside_the_model_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        list(encode_chunks([np.zeros(3, np.float32)], 4, start=4))


@pytest.mark.parametrize(
    "name",
    ["short", "x" * 65, "0123456789abcdef/", "0123456789abcdéf", 12345678901234567, b"0" * 32, ""],
)
def test_an_upload_name_that_is_not_a_long_random_id_is_refused(name: Any) -> None:
    payload = unpack_message(pack(post_weights(chunk_payload([[2]], 0, 2, np.zeros(2)), 0)))
    payload["weights"]["chunk"]["upload"] = name
    with pytest.raises(ProtocolError, match="'upload' must be 16 to 64"):
        decode_chunk(payload["weights"])
    with pytest.raises(ProtocolError, match="'upload' must be 16 to 64"):
        parse_federated({"type": 15, "upload": name})


def test_upload_progress_both_ways() -> None:
    asked = parse_federated(unpack_message(pack(upload_progress(NAME))))
    assert asked == UploadProgress(NAME)
    answer = parse_upload_progress(unpack_message(pack(upload_progress(NAME, 42))))
    assert answer == UploadProgress(NAME, 42)
    with pytest.raises(ProtocolError, match="received"):
        parse_upload_progress({"type": 15, "upload": NAME})
    with pytest.raises(ProtocolError, match="received"):
        parse_upload_progress({"type": 15, "upload": NAME, "received": -1})
    with pytest.raises(ProtocolError, match="upload"):
        parse_federated({"type": 15})
