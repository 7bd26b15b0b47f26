"""The naive baseline as a kind: no recurrent layer at all. The dense layer reads the
flattened embeddings of the last ``max_len`` words; with 8-dimensional embeddings on 20 words
for 10 epochs, as in the book it comes from."""

from elman.cells.kind import CellKind

SHALLOW = CellKind(
    name="shallow",
    help="flattened embeddings, no RNN (the naive baseline)",
    build=None,
    texts_only=True,
    preset={"model": {"embedding_dim": 8, "max_len": 20}, "train": {"epochs": 10}},
)
