"""The embedded model zoo's run-time part: the "emoji world" and where the committed zoo lives.

`vocabulary` holds the curated subjects (Unicode names, CLDR keywords), `styles` the
describable procedural styles, `render` draws subjects from the fonts, `draws` turns
(subject, seed) into captioned styled images and held-out references, `parti_mapping`
maps PartiPrompts onto the world's subjects, and `embedded` finds the committed weights.
Building the zoo (datasets, trainers, assembly, report) is `zoo_build`.
"""
