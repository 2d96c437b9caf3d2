"""The embedded model zoo's "emoji world": a curated vocabulary, renderers and the dataset.

Emoji subjects are rendered from Noto Color Emoji (and capital letters from a sans font),
given describable procedural styles, and written with several caption phrasings as a
deterministic dataset for the zoo's VQ tokenizer, base model and judge CLIP. Held-out styles
(Symbola line art and procedural looks never shown in training) serve StyleDrop development.
"""
