"""The file names of a native model folder (`muse.checkpoint` reads and writes it).

Kept apart from `muse.checkpoint`, which imports JAX, so that code that only names the
files (the zoo's PyTorch trainers, the command line) does not pay for JAX.
"""

MODEL_JSON = "model.json"
TRANSFORMER_FILE = "transformer.safetensors"
VQ_FILE = "vqvae.safetensors"
TEXT_ENCODER_DIR = "text_encoder"
TOKENIZER_DIR = "tokenizer"
