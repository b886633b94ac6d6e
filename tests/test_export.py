"""export.py and the ONNX backend (utils/serving/onnx_export.py, utils/serving/onnx_backend.py): the graphs, their
dynamic axes, the validation report, equal predictions through the one code path, picking the backend, errors.
One tiny NER model is fine-tuned and exported per session (shared with tests/test_serve.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification, BertModel

import export
import predict
import run_ner
from tests.conftest import ROOT
from utils.core.conll import read_conll
from utils.core.errors import ConfigError, DataError, run_command
from utils.serving import onnx_export
from utils.serving.export_validation import BUILT_IN_FILE, EXTRA_TEXTS, WORDS, validation_examples
from utils.serving.onnx_backend import GRAPH_FILES, REPORT_FILE, OnnxForward, onnx_session, resolve_backend
from utils.serving.onnx_export import export_model
from utils.serving.predictor import Predictor
from utils.serving.torch_backend import TorchForward

NER_DATA = ROOT / "data" / "ner"
SENTIMENT = ROOT / "data" / "classification" / "sentiment"
LONG = " ".join(["Officials in Brussels and Washington met in Geneva ."] * 50)  # over 512 tokens

_BUILT: dict[str, str] = {}


def exported_ner_run(tiny_model: str, factory) -> str:
    """A seeded 2-layer, 64-wide BERT (the tiny model's tokenizer) fine-tuned on the NER sample, which then tags
    about 50 entities in its test file, exported with int8; built once per session for this module and
    tests/test_serve.py."""
    if "ner" not in _BUILT:
        base, out = factory.mktemp("onnx-ner-base"), factory.mktemp("onnx-ner")
        config = AutoConfig.from_pretrained(tiny_model, hidden_size=64, intermediate_size=128)
        torch.manual_seed(0)
        BertModel(config).save_pretrained(base)
        AutoTokenizer.from_pretrained(tiny_model).save_pretrained(base)
        run_ner.main(
            [
                "--model",
                str(base),
                "--train_file",
                str(NER_DATA / "train.conll"),
                "--num_train_epochs",
                "3",
                "--learning_rate",
                "5e-3",
                "--per_device_train_batch_size",
                "16",
                "--report_to",
                "none",
                "--save_strategy",
                "no",
                "--output_dir",
                str(out),
            ]
        )
        export_model(str(out), quantize="int8", validation_file=str(NER_DATA / "test.conll"))
        _BUILT["ner"] = str(out)
    return _BUILT["ner"]


@pytest.fixture(scope="session")
def onnx_ner(tiny_model, tmp_path_factory) -> str:
    return exported_ner_run(tiny_model, tmp_path_factory)


def random_classifier(tiny_model: str, directory: Path, labels: list[str]) -> str:
    """A random tiny single-label classifier saved as a fine-tuning run saves it (label names in the config)."""
    config = AutoConfig.from_pretrained(
        tiny_model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
        problem_type="single_label_classification",
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def classifier(tiny_model, tmp_path_factory) -> str:
    """A random tiny sentiment classifier saved as a run saves it, exported (fp32 + int8) and validated on a TSV."""
    directory = random_classifier(tiny_model, tmp_path_factory.mktemp("onnx-classifier"), ["negative", "positive"])
    # random weights put many texts near 50/50, where int8 noise may flip a label: agreement is not the point here
    export_model(
        str(directory),
        quantize="int8",
        validation_file=str(SENTIMENT / "test.tsv"),
        min_agreement=0.5,
        min_quantized_agreement=0.5,
    )
    return directory


def report(directory: str) -> dict:
    return json.loads((Path(directory) / "onnx" / REPORT_FILE).read_text(encoding="utf-8"))


def same_predictions(first: list[dict], second: list[dict]) -> None:
    """Equal results but for the last digits of scores and probabilities."""
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert {k: v for k, v in a.items() if k not in ("entities", "probabilities")} == {
            k: v for k, v in b.items() if k not in ("entities", "probabilities")
        }
        if "entities" in a:
            assert [{k: v for k, v in e.items() if k != "score"} for e in a["entities"]] == [
                {k: v for k, v in e.items() if k != "score"} for e in b["entities"]
            ]
            assert [e["score"] for e in a["entities"]] == pytest.approx([e["score"] for e in b["entities"]], abs=2e-4)
        if "probabilities" in a:
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=2e-5)


# ---------------------------------------------------------------- the forward contract (pure)


class EchoSession:
    """An ONNX Runtime session stand-in: logits = input_ids * 10 + attention_mask (+ 100 * token_type_ids)."""

    def __init__(self, names):
        self.names = names

    def get_inputs(self):
        return [type("Node", (), {"name": name}) for name in self.names]

    def get_outputs(self):
        return [type("Node", (), {"name": "logits"})]

    def run(self, outputs, feeds):
        logits = feeds["input_ids"] * 10 + feeds["attention_mask"] + 100 * feeds.get("token_type_ids", 0)
        return [logits[..., None].astype(np.float32)]


def test_onnx_forward_has_the_torch_forwards_contract():
    class Echo(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return {"logits": (input_ids * 10 + attention_mask).unsqueeze(-1)}

    rows = {"input_ids": [[1], [2, 2, 2], [3, 3]], "attention_mask": [[1], [1, 1, 1], [1, 1]], "word_index": [[0]]}
    theirs = [
        (b, x["logits"].squeeze(-1).tolist()) for b, x in TorchForward(Echo(), torch.device("cpu"), 2, pad_id=9)(rows)
    ]
    forward = OnnxForward(EchoSession(["input_ids", "attention_mask", "token_type_ids"]), 2, pad_id=9)
    ours = list(forward(rows))
    assert (
        [(b, x["logits"].squeeze(-1).tolist()) for b, x in ours]
        == theirs
        == [([1, 2], [[21, 21, 21], [31, 31, 90]]), ([0], [[11]])]
    )
    # outputs by the graph's names, float32; token_type_ids, not given, were zeros
    assert all(list(x) == ["logits"] and x["logits"].dtype == torch.float32 for _, x in ours)


def test_parallel_rows_run_each_row_alone_in_input_order():
    rows = {"input_ids": [[1], [2, 2, 2], [3, 3]], "attention_mask": [[1], [1, 1, 1], [1, 1]]}
    forward = OnnxForward(EchoSession(["input_ids", "attention_mask", "token_type_ids"]), 2, pad_id=9, parallel_rows=2)
    assert [(b, x["logits"].squeeze(-1).tolist()) for b, x in forward(rows)] == [
        ([0], [[11]]),
        ([1], [[21, 21, 21]]),
        ([2], [[31, 31]]),
    ]  # no padding


# ---------------------------------------------------------------- the export


def test_export_writes_the_graphs_tokenizer_config_and_a_passing_report(onnx_ner):
    folder = Path(onnx_ner) / "onnx"
    names = {path.name for path in folder.iterdir()}
    assert {GRAPH_FILES["fp32"], GRAPH_FILES["int8"], "config.json", "tokenizer.json", REPORT_FILE} <= names
    assert not list(Path(onnx_ner).glob(".onnx-*")), "a staging folder was left behind"
    assert folder.stat().st_mode & 0o055, "the export folder must be readable as a plain mkdir's would be"
    data = report(onnx_ner)
    assert data["passed"] and data["task"] == "ner" and data["exporter"].startswith("torch.onnx.export(dynamo=True)")
    assert data["graphs"]["fp32"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    fused = data["graphs"]["fp32"]["onnxruntime_optimizations"]
    assert fused["fusions"]["attention"] == 2 and fused["attention_qkv_sizes_dropped"] == 2  # one per layer
    assert fused["skip_layer_norms_unfused"] == 4 and "SkipLayerNormalization" not in fused["ops"]
    int8 = data["graphs"]["int8"]
    # per layer: Attention -> QAttention, and the attention output, intermediate and output MatMuls; the head kept
    assert int8["quantized_nodes"] == 8 and int8["quantized_ops"] == ["MatMulInteger", "QAttention"]
    assert len(int8["kept_fp32"]) == 1
    validation = data["validation"]
    words = sum(len(tokens) for tokens in read_conll(NER_DATA / "test.conll").tokens)
    assert validation["unit"] == "word" and validation["fp32"]["units"] == words
    assert validation["fp32"]["max_abs_logit_diff"] < 1e-4 and validation["fp32"]["agreement"] == 1.0
    assert 0 < validation["int8"]["max_abs_logit_diff"] < 3 and validation["int8"]["agreement"] >= 0.98


def test_the_graph_has_dynamic_batch_and_sequence_axes(onnx_ner):
    session = onnx_session(Path(onnx_ner) / "onnx" / GRAPH_FILES["fp32"], torch.device("cpu"))
    for node in session.get_inputs():
        assert [isinstance(dim, str) for dim in node.shape] == [True, True], node.shape
    predictor = Predictor.from_pretrained(onnx_ner, device="cpu", backend="torch")
    generator = np.random.default_rng(0)
    for batch, length in ((1, 2), (1, 3), (5, 70), (2, 512)):
        ids = generator.integers(1000, 20000, size=(batch, length))
        mask = np.ones_like(ids)
        mask[0, length // 2 + 1 :] = 0  # a padded row
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (logits,) = session.run(["logits"], feeds)
        with torch.no_grad():
            expected = predictor.model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
        keep = mask.astype(bool)
        assert logits.shape == expected.shape and np.abs(logits - expected)[keep].max() < 1e-4


def test_onnx_predictions_equal_pytorchs_through_the_same_windows_and_context(onnx_ner):
    sentences = read_conll(NER_DATA / "test.conll").tokens[:20]
    texts = [" ".join(tokens) for tokens in sentences] + ["", LONG, "Zürich — Kyoto\u00a0!"]
    documents = [f"d{i // 4}" for i in range(len(sentences))]
    for options in ({}, {"max_seq_length": 16, "stride": 4, "batch_size": 3}, {"context_size": 8}):
        torch_predictor = Predictor.from_pretrained(onnx_ner, device="cpu", backend="torch", **options)
        onnx_predictor = Predictor.from_pretrained(onnx_ner, device="cpu", backend="onnx-fp32", **options)
        assert onnx_predictor.model is None and onnx_predictor.backend == "onnx-fp32"
        same_predictions(onnx_predictor.predict(texts), torch_predictor.predict(texts))
        same_predictions(
            onnx_predictor.predict(sentences, documents=documents),
            torch_predictor.predict(sentences, documents=documents),
        )
    assert sum(len(r["entities"]) for r in torch_predictor.predict(texts)) > 0, "the model tags no entity"


def test_row_parallel_results_never_depend_on_batchmates(onnx_ner):
    sentences = read_conll(NER_DATA / "test.conll").tokens[:24]
    texts = [" ".join(tokens) for tokens in sentences] + [LONG]
    for backend in ("onnx-int8", "onnx-fp32"):
        rows = Predictor.from_pretrained(onnx_ner, device="cpu", backend=backend, row_parallel=True, threads=2)
        assert rows.batch_dependent is None and rows.forward.parallel_rows == 2
        together = rows.predict(texts)
        assert [rows.predict([text])[0] for text in texts] == together  # exactly, int8 too
        assert rows.predict(texts[::-1]) == together[::-1]
        assert Predictor.from_pretrained(onnx_ner, device="cpu", backend=backend).batch_dependent is None  # default
        batched = Predictor.from_pretrained(onnx_ner, device="cpu", backend=backend, row_parallel=False)
        if backend == "onnx-fp32":  # rows alone are the batched rows without their padding
            assert batched.batch_dependent is None
            same_predictions(together, batched.predict(texts))
        else:
            assert "one scale per batch" in batched.batch_dependent
    assert sum(len(result["entities"]) for result in together) > 0, "the model tags no entity"
    with pytest.raises(ConfigError, match="--row_parallel runs rows alone on ONNX Runtime"):
        Predictor.from_pretrained(onnx_ner, device="cpu", backend="torch", row_parallel=True)


def test_the_backend_is_picked_from_what_the_directory_holds(onnx_ner, tiny_model, tmp_path):
    folder = Path(onnx_ner) / "onnx"
    assert resolve_backend(onnx_ner, "auto") == ("onnx-int8", folder / GRAPH_FILES["int8"])
    assert resolve_backend(onnx_ner, "onnx") == ("onnx-int8", folder / GRAPH_FILES["int8"])
    assert resolve_backend(onnx_ner, "onnx-fp32") == ("onnx-fp32", folder / GRAPH_FILES["fp32"])
    assert resolve_backend(str(folder), "auto")[0] == "onnx-int8"  # the export folder on its own
    assert resolve_backend(tiny_model, "auto") == ("torch", None)
    assert Predictor.from_pretrained(onnx_ner, device="cpu").backend == "onnx-int8"
    assert Predictor.from_pretrained(str(folder), device="cpu", backend="onnx-fp32").labels.names[0] == "O"
    with pytest.raises(ConfigError, match="holds only an ONNX export"):
        Predictor.from_pretrained(str(folder), device="cpu", backend="torch")
    with pytest.raises(ConfigError, match=r"holds no ONNX export .* run `python export.py --model"):
        resolve_backend(tiny_model, "onnx")
    with pytest.raises(ConfigError, match=r"--backend tensorrt: use one of"):
        resolve_backend(onnx_ner, "tensorrt")
    only_fp32 = tmp_path / "onnx"
    only_fp32.mkdir()
    (only_fp32 / GRAPH_FILES["fp32"]).write_bytes(b"")
    with pytest.raises(ConfigError, match=r"has no model_int8.onnx; run `python export.py .* --quantize int8`"):
        resolve_backend(str(tmp_path), "onnx-int8")
    with pytest.raises(ConfigError, match="Could not load the ONNX graph"):
        onnx_session(only_fp32 / GRAPH_FILES["fp32"], torch.device("cpu"))


def test_predict_cli_backend_flag(onnx_ner, tmp_path):
    outputs = {}
    for backend in ("torch", "onnx-fp32", "onnx-int8"):
        out = tmp_path / f"{backend}.jsonl"
        predict.main(
            ["--model", onnx_ner, "--input", str(NER_DATA / "test.conll"), "--output", str(out), "--backend", backend]
        )
        outputs[backend] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    same_predictions(outputs["onnx-fp32"], outputs["torch"])
    tags = [[tag for r in outputs[b] for tag in r["tags"]] for b in ("torch", "onnx-int8")]
    assert np.mean([a == b for a, b in zip(*tags)]) >= 0.98


def test_classification_export_validates_on_a_tsv_and_predicts_alike(classifier):
    data = report(classifier)
    assert data["passed"] and data["task"] == "classification"
    validation = data["validation"]
    assert validation["unit"] == "text" and validation["examples"] == validation["fp32"]["units"] > 10
    assert validation["fp32"]["agreement"] == 1.0 and validation["fp32"]["max_abs_logit_diff"] < 1e-4
    texts = ["a warm and funny film", "", "the screen scratches far too easily and " * 60]
    ours = Predictor.from_pretrained(classifier, device="cpu", backend="onnx-fp32", max_seq_length=32).predict(texts)
    theirs = Predictor.from_pretrained(classifier, device="cpu", backend="torch", max_seq_length=32).predict(texts)
    same_predictions(ours, theirs)
    assert ours[2]["truncated"] is True and ours[1]["label"] is None


def test_an_export_that_fails_validation_installs_nothing(classifier, monkeypatch):
    graph = Path(classifier) / "onnx" / GRAPH_FILES["fp32"]
    before = graph.stat().st_mtime_ns

    def exported_before(model, tokenizer, path, opset=None):  # the export itself is tested above: reuse its graph
        shutil.copy(graph, path)
        return {"inputs": ["input_ids", "attention_mask", "token_type_ids"], "output": "logits", "opset": 20}

    monkeypatch.setattr(onnx_export, "export_graph", exported_before)
    with pytest.raises(
        ConfigError,
        match=r"failed validation \(fp32 logits differ .* > --atol -1.0\); nothing was "
        r"installed",
    ):
        export_model(classifier, atol=-1.0, max_validation_examples=8)
    assert (Path(classifier) / "onnx" / GRAPH_FILES["fp32"]).stat().st_mtime_ns == before
    assert (Path(classifier) / ".onnx-rejected" / REPORT_FILE).is_file()
    assert not list(Path(classifier).glob(".onnx-export-*"))


def test_export_errors(tiny_model, tmp_path, onnx_ner):
    with pytest.raises(ConfigError, match="does not exist"):
        export.main(["--model", str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match="was never fine-tuned"):
        export.main(["--model", tiny_model])
    with pytest.raises(ConfigError, match="--quantize int4: use one of"):
        export_model(onnx_ner, quantize="int4")
    with pytest.raises(DataError, match=r"missing\.conll: validation file not found"):
        export_model(onnx_ner, validation_file=str(tmp_path / "missing.conll"))
    with pytest.raises(ConfigError, match="--min_agreement must be between 0 and 1"):
        export_model(onnx_ner, min_agreement=2)
    with pytest.raises(ConfigError, match=r"--min_quantized_agreement must be between 0 and 1, got -0\.1"):
        export_model(onnx_ner, min_quantized_agreement=-0.1)
    with pytest.raises(SystemExit, match=r"^error: Model directory .* does not exist"):  # one line, no traceback
        run_command(lambda: export.main(["--model", str(tmp_path / "none")]))


def test_without_a_validation_file_ner_is_judged_per_word_on_the_built_in_texts(onnx_ner, tmp_path):
    """The built-in texts go to a model of pre-split words as words, so agreement counts words (thousands of them),
    not whole texts (a few, where one borderline word refused a good export); the report says what it used."""
    run = tmp_path / "run"
    shutil.copytree(onnx_ner, run, ignore=shutil.ignore_patterns("onnx", ".onnx*"))
    result = export.main(["--model", str(run), "--quantize", "int8"])
    validation = result["validation"]
    words = sum(len(WORDS.findall(text)) for text in BUILT_IN_FILE.read_text(encoding="utf-8").splitlines())
    words += sum(len(WORDS.findall(text)) for text in EXTRA_TEXTS)
    assert validation["unit"] == "word" and validation["examples"] == 150 and 3000 < words < 3500
    assert validation["inputs"] == (
        f"built-in: 150 texts ({words} words) as pre-split words, from utils/serving/validation_texts.txt (news, "
        "reviews, headlines)"
    )
    # one decision per word, but for the empty text, which decides its (empty) entities as one
    assert validation["fp32"]["units"] == validation["int8"]["units"] == words + 1
    assert result["passed"] and validation["int8"]["agreement"] >= 0.95
    assert report(str(run))["validation"]["inputs"] == validation["inputs"]


def test_a_validation_limit_is_said_in_the_report(classifier):
    examples, inputs = validation_examples(None, Predictor.from_pretrained(classifier, backend="torch"), limit=8)
    assert len(examples) == 8 and inputs.startswith("built-in: 150 texts, from") and inputs.endswith("first 8 inputs")
