"""`ragserver ask` as a user runs it, against the labelled chat-completions STAND-IN
(support.openai_chat_standin; no LLM can run here): the answer streamed to stdout, then the references."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.api_fixtures import settings_env
from support.openai_chat_standin import MODEL, Behaviour, chat_standin

from ragserver.config import Settings

pytestmark = pytest.mark.slow

RAGSERVER = str(Path(sys.executable).parent / "ragserver")
STANDIN_ANSWER = "The gadget stores vectors in Postgres [1]. It answers questions [2][1]."


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings_env(settings), "LOG_LEVEL": "warning", **extra}


async def run_ask(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The command in a child process, awaited: the stand-in answers from this event loop meanwhile."""
    process = await asyncio.create_subprocess_exec(
        RAGSERVER, "ask", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.fixture
def source_id(api_settings: Settings, tmp_path: Path) -> str:
    marker = f"cli{uuid.uuid4().hex[:10]}"
    (tmp_path / "gadget.md").write_text(f"# The {marker} gadget\n\nThe {marker} gadget keeps vectors in Postgres.\n")
    ingested = subprocess.run(
        [RAGSERVER, "ingest", str(tmp_path / "gadget.md")],
        env=cli_env(api_settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingested.returncode == 0, ingested.stderr
    return str(json.loads(ingested.stdout)["source_id"])


async def test_ask_streams_the_answer_then_lists_the_references(api_settings: Settings, source_id: str) -> None:
    async with chat_standin() as standin:
        env = cli_env(api_settings, LLM_URL=standin.base_url, LLM_MODEL=MODEL, ASK_MIN_RERANK_SCORE="0")
        code, stdout, stderr = await run_ask(env, "where are the vectors kept?", "--source", source_id)
        assert code == 0, stderr
        answer, _, references = stdout.partition("\n")
        assert answer == STANDIN_ANSWER
        assert references.startswith("[1]* "), stdout  # the document is one chunk: [1] exists and is cited
        [sent] = standin.requests
        assert "keeps vectors in Postgres" in sent.prompt and sent.body["stream"] is True

        standin.behaviour = Behaviour(mode="error_mid_stream")
        code, stdout, stderr = await run_ask(env, "where are the vectors kept?", "--source", source_id)
        assert code == 1 and "the model crashed" in stderr and "Traceback" not in stderr, stderr


async def test_ask_masks_the_llm_urls_password_in_its_log(api_settings: Settings, source_id: str) -> None:
    async with chat_standin() as standin:
        url = standin.base_url.replace("http://", "http://ask:pw-SECRET-77aa@")
        env = cli_env(api_settings, LLM_URL=url, LLM_MODEL=MODEL, ASK_MIN_RERANK_SCORE="0", LOG_LEVEL="info")
        code, stdout, stderr = await run_ask(env, "where are the vectors kept?", "--source", source_id)
    assert code == 0 and stdout.startswith(STANDIN_ANSWER), stderr
    assert "HTTP Request: POST" in stderr and "pw-SECRET-77aa" not in stderr, stderr  # httpx logs the URL


async def test_ask_without_an_llm_names_the_settings(api_settings: Settings) -> None:
    code, _, stderr = await run_ask(cli_env(api_settings, LLM_URL="", LLM_MODEL=""), "anything")
    assert code == 1, stderr
    assert stderr.startswith("error: answering needs an LLM") and "LLM_URL" in stderr and "LLM_MODEL" in stderr
    assert "Loading weights" not in stderr  # refused before the models load
