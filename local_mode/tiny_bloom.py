"""Build a tiny BLOOM offline: random weights from a BloomConfig and a tokenizer trained on the spot.

The model has BLOOM's architecture (ALiBi attention, tied embeddings) and BLOOM's special token ids, but only
2 layers, a hidden size of 64 and a vocabulary of at most 512 tokens, so it loads in well under a second. Its
weights are random, so its text is meaningless: it exists to run the request path, not to answer questions.

The result is saved with ``save_pretrained`` under a cache folder and reused by later runs.
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path

LOGGER = logging.getLogger(__name__)

# Bump when the recipe below changes, so that caches built by older code are not reused.
RECIPE_VERSION = "v1"

CACHE_DIR_VARIABLE = "BLOOM_LOCAL_CACHE_DIR"

# BLOOM's tokenizer puts these at ids 0-3, and BloomConfig's defaults refer to them.
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")

VOCABULARY_SIZE = 512
HIDDEN_SIZE = 64
LAYERS = 2
ATTENTION_HEADS = 4
WEIGHTS_SEED = 1234

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")

# Training text for the tokenizer. It only has to give the byte-pair merges enough common English words.
TOKENIZER_CORPUS = """
The BLOOM large language model is a multilingual model that writes text in many languages.
A language model predicts the next token from the tokens before it, one step at a time.
Large models need many graphics cards, so teams try a small model on one machine first.
The small model in this folder has random weights and writes words in a random order.
It is still useful, because the request, the validation and the errors are the same as in the cloud.
An endpoint answers requests over HTTP, and a client sends a prompt with a few generation parameters.
The parameters set how many new tokens to generate, how random the sampling is and how many beams to search.
A higher temperature makes the text more surprising, and a lower one makes it more predictable.
Top k keeps the most likely tokens, and top p keeps the smallest set whose probability reaches p.
A repetition penalty lowers the score of tokens that were already generated.
When the model is stopped, the service returns an error that explains how to start it again.
The weather was warm in the morning and cold in the evening, with rain in the north of the country.
People walked along the river, talked about their work and bought bread, cheese and fresh fruit.
The library opens at nine in the morning and closes at six in the evening from Monday to Friday.
A train leaves the station every hour, and the journey to the coast takes about two hours.
The children read books about animals, stars, oceans, mountains and the history of old cities.
Engineers measure the time of each request, the number of tokens and the cost of every running hour.
Good software explains its errors, keeps its promises and tests the cases that break it.
The garden has apple trees, green grass, small flowers and a wooden table under the old oak.
Music played in the square while the market sold vegetables, coffee, honey and warm soup.
"""


def default_cache_dir() -> Path:
    """Return the cache folder: $BLOOM_LOCAL_CACHE_DIR, else $XDG_CACHE_HOME/bloom-on-aws, else ~/.cache/..."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    if configured:
        return Path(configured)
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "bloom-on-aws"


def tiny_bloom_dir(cache_dir: Path | None = None) -> Path:
    """Return the folder of the tiny BLOOM, building and saving it there first if needed."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model_dir = cache_dir / f"tiny-bloom-{RECIPE_VERSION}"
    if all((model_dir / name).is_file() for name in REQUIRED_FILES):
        return model_dir

    cache_dir.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix="tiny-bloom-build-", dir=cache_dir))
    try:
        save_tiny_bloom(build_dir)
        # A rename is atomic, so a concurrent run finds either no folder or a complete one.
        os.rename(build_dir, model_dir)
        LOGGER.info("Built the tiny BLOOM in %s", model_dir)
    except OSError:
        if not all((model_dir / name).is_file() for name in REQUIRED_FILES):
            raise
        LOGGER.info("Another process built the tiny BLOOM in %s first", model_dir)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return model_dir


def save_tiny_bloom(model_dir: Path) -> None:
    """Build the tokenizer and the model and save both to model_dir."""
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    tokenizer = build_tokenizer()
    config = BloomConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        n_layer=LAYERS,
        n_head=ATTENTION_HEADS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    # A fixed seed gives the same weights on every build with the same torch version.
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(WEIGHTS_SEED)
    try:
        model = BloomForCausalLM(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)

    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)


def build_tokenizer():
    """Train a byte-level BPE tokenizer like BLOOM's on the built-in corpus and wrap it for transformers.

    The byte alphabet is limited to the characters of the corpus, so that the random model picks whole words
    and sub-words more often than single bytes. Other characters become ``<unk>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS[0]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCABULARY_SIZE, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator(TOKENIZER_CORPUS.split("\n"), trainer)

    unk, bos, eos, pad = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token=unk, bos_token=bos, eos_token=eos, pad_token=pad
    )
