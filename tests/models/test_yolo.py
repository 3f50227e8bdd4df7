"""The yolo-seg backend: offline training through Ultralytics' trainer, callbacks, checkpoints and prediction."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cardmetry.data.instances import GRAPHIC, OUTER
from cardmetry.data.synth import render, sample_scene
from cardmetry.models.base import FitCallbacks, ModelSpec

ROOT = Path(__file__).resolve().parents[2]


def test_the_module_and_the_registry_never_import_ultralytics():
    # AGPL isolation: in a fresh interpreter, importing the backend and listing backends leaves ultralytics unloaded,
    # and with ultralytics blocked the backend says how to install it.
    code = (
        "import sys\n"
        "from cardmetry.models.registry import list_backends\n"
        "import cardmetry.models.backends.yolo as yolo\n"
        "list_backends()\n"
        "assert 'ultralytics' not in sys.modules, 'ultralytics was imported'\n"
        "sys.modules['ultralytics'] = None\n"
        "print(yolo.YoloSegBackend().unavailable_reason())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install -e '.[yolo]'" in done.stdout


from cardmetry.models.offline import FONT, prepare_ultralytics, ultralytics_missing_reason  # noqa: E402

if ultralytics_missing_reason():
    pytest.skip(ultralytics_missing_reason(), allow_module_level=True)
prepare_ultralytics()  # before the first import: Ultralytics reads its offline switches when it is imported
ultralytics = pytest.importorskip("ultralytics")

from cardmetry.models.backends.yolo import YoloJob, YoloSegBackend, write_dataset  # noqa: E402
from cardmetry.models.checkpoint import load_checkpoint  # noqa: E402

IMGSZ = 64


def _spec(**changes) -> ModelSpec:
    fields = {"backend": "yolo-seg", "variant": "yolo11n-seg", "classes": (OUTER, GRAPHIC), "imgsz": IMGSZ}
    return ModelSpec(**{**fields, **changes}, pretrained=False)


@pytest.fixture(scope="module")
def items():
    """Four small renders (about 140 x 190 px) with both borders labelled (indices into (OUTER, GRAPHIC))."""
    out = []
    for seed in range(4):
        truth = render(sample_scene(seed, dpi=40))
        out.append((truth.image, [(0, truth.truth.outer_polygon), (1, truth.truth.graphic_polygon)]))
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Any connection, DNS lookup or Ultralytics download is recorded (and fails)."""
    attempts: list[str] = []

    def refuse(what):
        def call(*args, **kwargs):
            attempts.append(f"{what}{args[:2]}")
            raise OSError(f"network use in a test: {what}")

        return call

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    import ultralytics.utils.downloads as downloads

    monkeypatch.setattr(downloads, "safe_download", refuse("safe_download"))
    parse_url, probe = downloads.is_url, refuse("is_url(check=True)")
    # is_url only parses a string unless asked to check that the address answers.
    monkeypatch.setattr(downloads, "is_url", lambda url, check=False: probe(url) if check else parse_url(url))
    return attempts


class Recorder:
    """FitCallbacks that record what arrives, and ask to stop after `stop_after` batches (None: never)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[tuple] = []
        self.stop_after = stop_after
        self.threads: set[int] = set()  # torch's CPU threads as each batch ended

    def callbacks(self) -> FitCallbacks:
        return FitCallbacks(
            epoch_started=lambda epoch: self.events.append(("epoch_started", epoch)),
            batch=lambda epoch, index, losses: self.batch(epoch, index, losses),
            epoch_end=lambda epoch, metrics: self.events.append(("epoch_end", epoch, dict(metrics))),
            should_stop=lambda: self.stop_after is not None and self.batches() >= self.stop_after,
            log=lambda line: self.events.append(("log", line)),
        )

    def batch(self, epoch: int, index: int, losses: dict) -> None:
        self.events.append(("batch", epoch, index, dict(losses)))
        self.threads.add(torch.get_num_threads())

    def batches(self) -> int:
        return sum(1 for event in self.events if event[0] == "batch")

    def kinds(self) -> list[tuple]:
        return [event[:2] if event[0] != "batch" else event[:3] for event in self.events if event[0] != "log"]


@pytest.mark.parametrize(
    ("epochs", "stop_after", "expected"),
    [
        # two epochs of two batches (3 training images, batch 2): every epoch announced, its batches, one end each
        (
            2,
            None,
            [
                ("epoch_started", 0),
                ("batch", 0, 0),
                ("batch", 0, 1),
                ("epoch_end", 0),
                ("epoch_started", 1),
                ("batch", 1, 0),
                ("batch", 1, 1),
                ("epoch_end", 1),
            ],
        ),
        # stop asked after the first batch of three epochs: the epoch ends (validated, saved) and no other starts
        (3, 1, [("epoch_started", 0), ("batch", 0, 0), ("epoch_end", 0)]),
    ],
)
def test_fit_runs_offline_and_reports_in_order(items, tmp_path, no_network, epochs, stop_after, expected):
    import ultralytics.utils as ul_utils

    recorder = Recorder(stop_after)
    threads = ul_utils.NUM_THREADS + 1  # not what Ultralytics sets by itself (cores - 1, at most 8)
    job = YoloJob(_spec(), items[:3], items[3:], tmp_path / "run", epochs=epochs, batch=2, workers=0, threads=threads)
    best = YoloSegBackend().fit(job, recorder.callbacks())
    torch.set_num_threads(1)
    assert recorder.kinds() == expected
    assert recorder.threads == {threads}  # ours, set again after Ultralytics chose its own
    assert no_network == []
    # Offline switches are in place and Ultralytics found our font where it looks for Arial.
    assert not ul_utils.ONLINE and not ul_utils.AUTOINSTALL and not ul_utils.SETTINGS["sync"]
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        assert (Path(ul_utils.USER_CONFIG_DIR) / name).read_bytes() == FONT.read_bytes()
    ends = [event for event in recorder.events if event[0] == "epoch_end"]
    for name in ("loss_box", "loss_seg", "box_precision", "box_mAP50-95", "mask_recall", "mask_mAP50", "lr"):
        assert name in ends[0][2]
    first_batch = next(event for event in recorder.events if event[0] == "batch")
    assert set(first_batch[3]) >= {"box", "seg", "cls", "dfl"}  # the batch's losses by name
    # The best weights are a cardmetry checkpoint of plain tensors that our own build takes back.
    state = load_checkpoint(best)
    assert state["spec"] == job.spec
    YoloSegBackend().build(state["spec"]).load_state_dict(state["model"])


def test_prepare_ultralytics_sets_the_switches(tmp_path):
    folder = prepare_ultralytics(tmp_path / "cfg")
    import os

    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "false"
    assert (folder / "Arial.ttf").is_file()
    assert not ultralytics.utils.SETTINGS["sync"] and not ultralytics.utils.SETTINGS["mlflow"]
    assert str(folder) in ultralytics.utils.SETTINGS["runs_dir"]  # runs never land beside the current directory


def test_dataset_folder_has_labels_and_a_generated_data_yaml(items, tmp_path):
    job = YoloJob(_spec(), items[:2], items[2:3], tmp_path / "run")
    data_yaml = write_dataset(tmp_path / "ds", job)
    data = yaml.safe_load(data_yaml.read_text())
    assert set(data) == {"path", "train", "val", "names"}  # no download: key, nothing else to execute or fetch
    assert data["names"] == {0: "outer", 1: "graphic"} and Path(data["path"]).is_absolute()
    line = (tmp_path / "ds" / "labels" / "train" / "000000.txt").read_text().splitlines()[0].split()
    image = items[0][0]
    expected = items[0][1][0][1] / np.array([image.shape[1], image.shape[0]])
    assert line[0] == "0"
    np.testing.assert_allclose(np.array(line[1:], float).reshape(-1, 2), np.clip(expected, 0, 1), atol=1e-6)


@pytest.mark.parametrize(
    ("train", "error"),
    [
        ([(np.zeros((64, 64, 3), np.uint8), [(2, np.array([[1, 1], [9, 1], [9, 9]]))])], "not an index"),  # 2 classes
        ([(np.zeros((64, 64, 3), np.uint8), [(0, np.array([[1, 1], [9, 1]]))])], "at least 3 points"),  # a line
        ([(np.zeros((64, 64), np.uint8), [])], "uint8 RGB"),  # a grey image
        ([], "no train images"),  # nothing to train on
    ],
)
def test_bad_jobs_are_refused(items, tmp_path, train, error):
    job = YoloJob(_spec(), train, items[:1], tmp_path / "run")
    with pytest.raises(ValueError, match=error):
        write_dataset(tmp_path / "ds", job)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (_spec(imgsz=80), "divides by 32"),  # YOLO's largest stride is 32
        (_spec(variant="yolo11x-seg"), "no variant"),  # not one of ours
    ],
)
def test_bad_specs_are_refused(spec, error):
    with pytest.raises(ValueError, match=error):
        YoloSegBackend().build(spec)


def test_user_weights_load_by_name_and_shape_and_pickles_are_refused(tmp_path):
    torch.manual_seed(0)
    backend = YoloSegBackend()
    source = backend.build(_spec(classes=(OUTER,)))  # another class count: its class head does not fit
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    loaded = backend.build(_spec(weights=str(tmp_path / "plain.pt")))
    own, theirs = loaded.state_dict(), source.state_dict()
    shared = [k for k in own if own[k].shape == theirs[k].shape and own[k].is_floating_point()]
    assert all(torch.equal(own[k], theirs[k]) for k in shared)
    assert len(shared) < len(own)  # the class head was left as built
    torch.save({"model": source}, tmp_path / "pickled.pt")  # a pickled module, as Ultralytics' .pt files are
    with pytest.raises(ValueError, match="pickled"):
        backend.build(_spec(weights=str(tmp_path / "pickled.pt")))


def test_predictions_and_the_onnx_export_agree(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    backend, spec = YoloSegBackend(), _spec()
    model = backend.build(spec).eval()
    images = torch.rand(1, 3, IMGSZ, IMGSZ)
    found = backend.predict_batch(model, images, spec, score_threshold=0.0)[0]
    assert found, "an untrained model still gives candidates at threshold 0"
    for inst in found:
        assert inst.class_id in spec.classes and inst.mask.shape == (IMGSZ, IMGSZ) and inst.mask.dtype == np.float32
        assert inst.mask.min() >= 0.0 and inst.mask.max() <= 1.0 and inst.polygon.shape[1] == 2
    backend.export_onnx(model, spec, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": images.numpy()})
    with torch.inference_mode():
        predictions, protos = model(images)[0]
    np.testing.assert_allclose(outputs[0], predictions.numpy(), atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(outputs[1], protos.numpy(), atol=1e-3, rtol=1e-3)
    decoded = backend.decode_onnx(outputs, spec)
    assert len(decoded) == len(backend.predict_batch(model, images, spec)[0])


def test_a_corrupt_image_is_still_an_image_error_once_ultralytics_is_imported(tmp_path) -> None:
    # Ultralytics replaces PIL's Image.open with one that tries to import a HEIF plugin on unknown bytes.
    from cardmetry.data.images import ImageError, load_image
    from cardmetry.models.offline import prepare_ultralytics

    prepare_ultralytics()
    import ultralytics  # noqa: F401

    bad = tmp_path / "card.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageError, match=r"card\.jpg"):
        load_image(bad)
