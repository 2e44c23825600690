"""Realistic response bodies of structured-output requests, shaped as OpenAI returns them
(chat completions and responses), for the structured-output, output-problem and cost tests."""

from __future__ import annotations

from typing import Any

import orjson

TICKET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["bug", "feature", "question"]},
        "confidence": {"type": "number"},
        "priority": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "owner": {
            "type": ["object", "null"],
            "properties": {
                "team": {"type": "string"},
                "oncall": {"type": "boolean"},
            },
            "required": ["team", "oncall"],
            "additionalProperties": False,
        },
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "text": {"type": "string"}},
                "required": ["n", "text"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["label", "confidence", "priority", "tags", "owner", "steps"],
    "additionalProperties": False,
}
GOOD = {
    "label": "bug",
    "confidence": 0.93,
    "priority": 2,
    "tags": ["login", "android"],
    "owner": {"team": "mobile", "oncall": True},
    "steps": [{"n": 1, "text": "open app"}, {"n": 2, "text": "tap login"}],
}


def chat_format(schema: dict[str, Any] = TICKET_SCHEMA, name: str = "ticket") -> dict[str, Any]:
    """A chat request's ``response_format`` asking for ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def responses_format(schema: dict[str, Any] = TICKET_SCHEMA, name: str = "ticket") -> dict:
    """A responses request's ``text`` asking for ``schema``."""
    return {"format": {"type": "json_schema", "name": name, "strict": True, "schema": schema}}


def chat_body(
    content: str | None,
    finish: str = "stop",
    refusal: str | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": refusal,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage
        or {
            "prompt_tokens": 1200,
            "completion_tokens": 80,
            "total_tokens": 1280,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    }


def responses_body(
    text: str | None,
    status: str = "completed",
    reason: str | None = None,
    refusal: str | None = None,
    model: str = "gpt-5-mini-2025-08-07",
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
    if refusal is not None:
        content.append({"type": "refusal", "refusal": refusal})
    return {
        "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "error": None,
        "incomplete_details": None if reason is None else {"reason": reason},
        "model": model,
        "output": [
            {
                "id": "rs_67ccd2bf1c2c81908e41c8ecda4a4a83",
                "type": "reasoning",
                "summary": [],
            },
            {
                "type": "message",
                "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e6",
                "status": "completed" if status == "completed" else "incomplete",
                "role": "assistant",
                "content": content,
            },
        ],
        "text": {"format": responses_format()["format"]},
        "usage": {
            "input_tokens": 900,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 400,
            "output_tokens_details": {"reasoning_tokens": 320},
            "total_tokens": 1300,
        },
    }


def result_line(custom_id: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    """A batch output line carrying ``body``."""
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": f"req_{custom_id}", "body": body},
        "error": None,
    }


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
