"""``elman export``: the ONNX graph, run by onnxruntime, against elman on real test reviews."""

import tarfile

import numpy as np
import pytest

from conftest import run_elman


def test_onnx_graph_gives_elmans_probabilities_on_real_reviews(
    subset_model, subset_archive, tmp_path
):
    import onnx
    import onnxruntime

    import elman

    path = tmp_path / "model.onnx"
    result = run_elman("export", "--model", str(subset_model), "--onnx", str(path))
    assert result.returncode == 0, result.stderr
    graph = onnx.load(path)
    assert "RNN" in [node.op_type for node in graph.graph.node]  # ONNX's own recurrence
    with tarfile.open(subset_archive) as archive:
        texts = [
            archive.extractfile(m).read().decode()
            for m in archive
            if "/test/" in m.name and m.isfile()
        ]
    trained = elman.load(subset_model)
    ids = trained.encode(texts)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_probabilities,) = session.run(None, {"ids": ids})
    assert len(texts) == 400 and onnx_probabilities.shape == (400,)
    np.testing.assert_allclose(onnx_probabilities, trained.predict_proba(texts), rtol=0, atol=1e-5)


def test_export_refuses_what_onnx_rnn_cannot_say(tmp_path):
    from elman.config import RunConfig
    from elman.data.imdb import IMDBConfig
    from elman.data.text import Vocabulary
    from elman.inference import save_bundle
    from elman.models import ModelConfig, ReviewClassifier

    model_config = ModelConfig(vocab_size=13, max_len=8, hidden_size=4, bidirectional=True)
    config = RunConfig(model_config, IMDBConfig(), classes=["negative", "positive"])
    save_bundle(
        tmp_path / "bi",
        ReviewClassifier(config.model),
        Vocabulary.from_ranked([f"w{i}" for i in range(10)], 13),
        config,
        [{"epoch": 1}],
        {},
    )
    result = run_elman(
        "export", "--model", str(tmp_path / "bi"), "--onnx", str(tmp_path / "m.onnx")
    )
    assert result.returncode == 1 and "export writes the reference architecture" in result.stderr
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(Exception, match="ending in .onnx"):
        from elman.export import export_onnx

        export_onnx(tmp_path / "bi", tmp_path / "m.txt")
