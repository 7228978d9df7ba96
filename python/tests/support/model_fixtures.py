"""Model fixtures (owned by the ml room): real local models, built or found once per session.

- `minilm_dir`: the packaged all-MiniLM-L6-v2 SentenceTransformer folder.
- `tiny_reranker_dir`: a random-weight Qwen3ForCausalLM reranker built by support.models.
- `tiny_cross_encoder_dir`: a random-weight BertForSequenceClassification (classic cross-encoder).
- `ml_user_base`: an empty ML env folder (no ml-env.json): the dev venv's torch is used, state ready.
- `ml_settings`: Settings pointing EMBEDDING_MODEL / RERANKER_MODEL at those folders, on CPU.
- `ml_service`: a started MLService on `ml_settings`, shared by the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ragserver.config import Settings
from ragserver.ml import MLService
from support.models import build_tiny_cross_encoder, build_tiny_qwen3_reranker, minilm_path


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return minilm_path()


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3_reranker(tmp_path_factory.mktemp("models") / "tiny-qwen3-reranker")


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-cross-encoder")


@pytest.fixture(scope="session")
def ml_user_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ml-env")


@pytest.fixture(scope="session")
def ml_settings(minilm_dir: Path, tiny_reranker_dir: Path, ml_user_base: Path) -> Settings:
    return Settings(
        embedding_model=str(minilm_dir),
        reranker_model=str(tiny_reranker_dir),
        ml_device="cpu",
        ml_user_base=ml_user_base,
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ml_service(ml_settings: Settings) -> AsyncIterator[MLService]:
    service = MLService(ml_settings)
    await service.start()
    yield service
    await service.stop()
