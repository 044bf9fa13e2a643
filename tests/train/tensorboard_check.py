"""Reads a loom run directory's TensorBoard events with TensorBoard's own readers and
checks them against the run's metrics.jsonl and samples/ (run by tests/train/train_test.cpp):

    python tensorboard_check.py RUN_DIR

Every number of every metrics.jsonl row (the last row of a step wins, as after a resume)
must be a scalar with that tag at that step, once, equal as a float32; every preview PNG
an image at its step, byte for byte. Prints `tensorboard-ok SCALARS IMAGES`; exits 3 when
the tensorboard package is not installed.
"""
import glob
import json
import math
import os
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
except ImportError as e:
    print(f"tensorboard is not installed ({e}); launch/setup.sh installs it in the venv")
    sys.exit(3)


def expected_scalars(run):
    """{tag: {step: value}} from metrics.jsonl, nested objects as 'outer/inner'."""
    want = {}

    def collect(row, prefix, step):
        for key, value in row.items():
            if not prefix and key == "step":
                continue
            name = f"{prefix}/{key}" if prefix else key
            if isinstance(value, dict):
                collect(value, name, step)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                want.setdefault(name, {})[step] = float(value)

    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            collect(row, "", row["step"])
    return want


def expected_images(run):
    """{step: PNG bytes} of samples/step-NNNNNNN.png."""
    out = {}
    for path in glob.glob(os.path.join(run, "samples", "step-*.png")):
        with open(path, "rb") as f:
            out[int(os.path.basename(path)[5:-4])] = f.read()
    return out


def same_float32(got, want):
    return math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-35)


def check_legacy_reader(run, scalars, images):
    """event_accumulator: scalars and images as TensorFlow 1 summaries."""
    acc = event_accumulator.EventAccumulator(run, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()
    assert sorted(tags["scalars"]) == sorted(scalars), (sorted(tags["scalars"]), sorted(scalars))
    for tag, want in scalars.items():
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        assert len(steps) == len(set(steps)), f"{tag}: a step more than once: {steps}"
        got = {e.step: e.value for e in events}
        assert got.keys() == want.keys(), f"{tag}: steps {sorted(got)} != {sorted(want)}"
        for step, value in want.items():
            assert same_float32(got[step], value), f"{tag} at step {step}: {got[step]} != {value}"
    if images:
        assert tags["images"] == ["samples"], tags["images"]
        got = {e.step: e for e in acc.Images("samples")}
        assert sorted(got) == sorted(images), (sorted(got), sorted(images))
        for step, png in images.items():
            assert got[step].encoded_image_string == png, f"image at step {step} differs from its PNG"
            assert got[step].width > 0 and got[step].height > 0
    else:
        assert not tags["images"], tags["images"]


def check_plugin_reader(run, scalars, images):
    """plugin_event_accumulator (TensorBoard's Python backend): the scalar and image plugins' tensors."""
    acc = plugin_event_accumulator.EventAccumulator(run, tensor_size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert sorted(acc.PluginTagToContent("scalars")) == sorted(scalars)
    for tag, want in scalars.items():
        got = {e.step: float(e.tensor_proto.float_val[0]) for e in acc.Tensors(tag)}
        assert got.keys() == want.keys() and all(same_float32(got[s], want[s]) for s in want), tag
    if images:
        assert list(acc.PluginTagToContent("images")) == ["samples"]
        got = {e.step: e.tensor_proto.string_val[2] for e in acc.Tensors("samples")}  # width, height, PNG
        assert got == images, "images in the plugin's tensors differ from the PNGs"


def main():
    run = sys.argv[1]
    files = glob.glob(os.path.join(run, "events.out.tfevents.*"))
    assert files, f"no event file in {run}"
    scalars, images = expected_scalars(run), expected_images(run)
    assert scalars, "metrics.jsonl holds no figures"
    check_legacy_reader(run, scalars, images)
    check_plugin_reader(run, scalars, images)
    print(f"tensorboard-ok {sum(len(v) for v in scalars.values())} {len(images)}")


if __name__ == "__main__":
    main()
