"""What tests need and the product does not: the man-in-the-middle proxy (:mod:`.mitm`).
Only tests and ``securecomm mitm`` import it; this package itself holds only the names of
its modes, for the command line's parser."""

#: What the proxy can do to what it forwards (see :mod:`.mitm`).
MODES = (
    "passive",
    "flip",
    "swap",
    "replay",
    "drop",
    "truncate",
    "inject",
    "unsign",
    *(CHUNK_MODES := ("drop-chunk", "reorder-chunks", "cut-chunk", "append-chunk")),
)
