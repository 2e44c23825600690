"""Whatever a server puts in a batch, it is refused as malformed (one line) or rendered:
never an internal error in ``batches get``, ``list``, ``wait`` or ``download``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jsonl_batch.api.answers import check_batch
from jsonl_batch.api.client import ApiError
from jsonl_batch.render import batches as rb

# what ``orjson.loads`` can give: integers within 64 bits, finite floats
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
counts = st.dictionaries(st.sampled_from(["total", "completed", "failed"]), values, max_size=3)
usage_keys = ["input_tokens", "output_tokens", "total_tokens", "input_tokens_details"]
usage = st.dictionaries(st.sampled_from(usage_keys), values, max_size=4)
errors = st.fixed_dictionaries(
    {},
    optional={
        "data": st.lists(
            st.dictionaries(st.sampled_from(["code", "line", "message", "param"]), values),
            max_size=2,
        )
        | values
    },
)
TYPED = {
    "request_counts": counts,
    "usage": usage,
    "errors": errors,
    "metadata": st.dictionaries(st.text(max_size=6), values, max_size=3),
    "created_at": st.integers(min_value=-(2**63), max_value=2**64 - 1),
}
batches = st.fixed_dictionaries(
    {"id": st.just("batch_1"), "status": st.sampled_from(["completed", "failed", "weird\x1b"])},
    optional={
        **{name: st.text(max_size=8) | values for name in [*rb.FIELD_ORDER[3:], "object", "extra"]},
        **{name: strategy | strategy | values for name, strategy in TYPED.items()},
        "in_progress_at": st.integers(min_value=-(2**63), max_value=2**64 - 1) | values,
    },
)


@settings(max_examples=200, deadline=None)
@given(batches | st.dictionaries(st.text(max_size=8), values))
def test_a_batch_is_refused_or_rendered(batch: dict[str, Any]) -> None:
    try:
        check_batch(batch, "get batch_1")
    except ApiError as exc:
        assert "malformed" in str(exc)
        return
    for text in (
        rb.batch_text(batch),
        rb.batches_table([batch, batch]),
        rb.final_text(batch),
        rb.status_line(batch),
        rb.progress_bar(batch, 12.5),
        rb.download_text(SimpleNamespace(batch=batch, output=None, errors=None)),
        rb.to_jsonl([batch]),
    ):
        assert isinstance(text, str)
