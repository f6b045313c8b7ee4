"""Builders for tiny real models: three Llama-architecture folders vLLM can serve.

Each folder holds a ``config.json`` (hidden 256, 4 heads, 2 KV heads, head dim 64,
2, 3 or 4 layers), a byte-level BPE tokenizer trained here on fixed text, a
``tokenizer_config.json`` and a ``generation_config.json``, and no weight file: vLLM
loads them with ``load_format="dummy"``, which fills random weights of the right
shapes. Nothing is downloaded, and the same code makes the same bytes every time.

Head dim 64 is not a free choice: vLLM's CPU attention rejects smaller heads.

Use :func:`cached_tiny_models` from tests (one build per machine and builder version,
shared by every test process), or run ``python tests/tiny_models.py DIR`` to write the
three folders into ``DIR`` for a deployment file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Bump when the files a build writes change, so stale caches are not reused.
BUILDER_VERSION = 1

VOCAB_SIZE = 512
MAX_POSITION_EMBEDDINGS = 1024
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"


@dataclass(frozen=True, slots=True)
class TinyModel:
    """One tiny model: its catalog name, its folder, and its depth."""

    name: str
    path: Path
    num_layers: int


# Names say the depth; a deeper model is slower per token, as a larger model would be.
TINY_MODEL_LAYERS = {"tiny-2l": 2, "tiny-3l": 3, "tiny-4l": 4}


def training_lines() -> list[str]:
    """A few hundred fixed lines of plain English for the tokenizer to learn from."""
    subjects = [
        "the agent",
        "a small model",
        "the scheduler",
        "every request",
        "the engine",
        "our workflow",
        "the router",
        "a large model",
    ]
    verbs = [
        "reads",
        "writes",
        "answers",
        "checks",
        "refines",
        "plans",
        "routes",
        "summarizes",
    ]
    objects = [
        "the question",
        "a short answer",
        "the draft",
        "its own output",
        "the final result",
        "a list of steps",
        "the retrieved text",
    ]
    endings = [
        "before the deadline.",
        "with care.",
        "in one pass.",
        "and then stops.",
        "while others wait.",
    ]
    lines = []
    # Walk the product with strides coprime to each list's length, so the 400 lines
    # mix words without any randomness.
    for i in range(400):
        lines.append(
            f"{subjects[i % len(subjects)]} {verbs[(3 * i) % len(verbs)]} "
            f"{objects[(5 * i) % len(objects)]} {endings[(7 * i) % len(endings)]} "
            f"Step {i % 10}: {i * 37 % 1000} tokens."
        )
    return lines


def build_tokenizer(folder: Path) -> None:
    """Train a byte-level BPE on :func:`training_lines` and save it into ``folder``.

    Writes ``tokenizer.json``, ``tokenizer_config.json`` and
    ``special_tokens_map.json`` through transformers' ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Byte level: every string encodes, so no prompt ever hits an unknown token.
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[BOS_TOKEN, EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_lines(), trainer=trainer)

    # Wrap for transformers, which writes the config files vLLM reads.
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=MAX_POSITION_EMBEDDINGS,
    )
    fast.save_pretrained(str(folder))


def model_config(num_layers: int) -> dict:
    """The ``config.json`` of a tiny Llama of ``num_layers`` layers."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": MAX_POSITION_EMBEDDINGS,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
        "dtype": "bfloat16",
    }


def build_tiny_model(folder: Path, num_layers: int, tokenizer_folder: Path) -> None:
    """Write one model folder: config, generation config and a copy of the tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    for item in sorted(tokenizer_folder.iterdir()):
        shutil.copyfile(item, folder / item.name)
    _write_json(folder / "config.json", model_config(num_layers))
    _write_json(
        folder / "generation_config.json",
        {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2},
    )


def build_tiny_models(root: Path) -> dict[str, TinyModel]:
    """Build the three tiny models under ``root`` (one folder each), by name."""
    root.mkdir(parents=True, exist_ok=True)
    tokenizer_folder = root / "_tokenizer"
    tokenizer_folder.mkdir(exist_ok=True)
    build_tokenizer(tokenizer_folder)
    models = {}
    for name, num_layers in TINY_MODEL_LAYERS.items():
        build_tiny_model(root / name, num_layers, tokenizer_folder)
        models[name] = TinyModel(name, root / name, num_layers)
    shutil.rmtree(tokenizer_folder)
    return models


def cached_tiny_models(cache_root: Path | None = None) -> dict[str, TinyModel]:
    """The three tiny models, built once per machine and reused, by name.

    The cache lives in ``cache_root`` (the system temp folder by default), in a folder
    named after a hash of the builder, so a changed builder never reads an old build.
    A build goes to a private folder first and is renamed into place, so concurrent
    test processes never see half a model.
    """
    base = Path(cache_root) if cache_root is not None else Path(tempfile.gettempdir())
    target = base / f"aragog-tiny-models-{_builder_hash()}"
    if not (target / "complete").is_file():
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="aragog-tiny-build-", dir=base))
        build_tiny_models(staging)
        (staging / "complete").write_text("ok\n", encoding="utf-8")
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished first; its build is byte-for-byte the same.
            shutil.rmtree(staging, ignore_errors=True)
    return {
        name: TinyModel(name, target / name, layers)
        for name, layers in TINY_MODEL_LAYERS.items()
    }


def _builder_hash() -> str:
    text = json.dumps(
        {
            "version": BUILDER_VERSION,
            "lines": training_lines(),
            "configs": {n: model_config(k) for n, k in TINY_MODEL_LAYERS.items()},
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/tiny_models.py DIR")
    for model in build_tiny_models(Path(sys.argv[1])).values():
        print(f"{model.name}: {model.path} ({model.num_layers} layers)")
