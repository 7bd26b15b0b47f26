"""Data sources, one module each, behind one interface (``elman.data.source.Source``).

    text.py       tokenizer, vocabulary, padding, encoding new texts (shared by text sources)
    split.py      Split, files of a folder or archive, class names, seeded hold-outs
    source.py     the Source interface, Splits, Given/Inputs for predict
    imdb.py       the Large Movie Review Dataset: archive -> cached ids -> padded, split arrays
    textfiles.py  the user's CSV/TSV/JSONL/class folders -> id arrays
    series.py     UCR/CSV/NumPy series -> values with NaN gaps, forecast targets
    speech.py     WAV -> mono at one rate -> log-mel/MFCC frames

``SOURCES`` is the registry: a new source is a module with a ``SOURCE`` and one line here.
"""

from elman.data import imdb, series, speech, textfiles
from elman.data.source import Source

SOURCES: dict[str, Source] = {
    source.name: source for source in (imdb.SOURCE, textfiles.SOURCE, series.SOURCE, speech.SOURCE)
}
