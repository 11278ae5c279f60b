"""The paper studies' pipeline at GPU speed: each measured rate beside the limit it should reach.

    python benchmarks/bench_gpu.py                      # one GPU, under 5 minutes
    python benchmarks/bench_gpu.py --device cpu --quick # the same code on the CPU, tiny (a smoke test)

Everything is generated here (nothing is downloaded): 500x375 JPEGs in an ImageFolder, twelve
randomly initialised ResNet-50 checkpoints where the paper-ssl zoo looks for them
($PEDLIB_MODELS), and throwaway studies in a temporary folder. It prints one Markdown table:

| what | measured | limit | share |

1. the limits: ResNet-50 inference on GPU-resident batches, channels-last (fp32 with TF32 off,
   bf16, fp16), and training steps (bf16, batch 64, SGD);
2. ``Study.extract`` on the JPEGs (decoded on the GPU) for one ResNet-50 at fp32, against the
   fp32 inference limit (target: >= 3,000 img/s on an H200);
3. ``Study.extract`` for twelve ResNet-50s fed from one decode, against the twelve-model limit
   (fp32 limit / 12; target >= 80%);
4. one fine-tuning sweep job's training steps (GPU decoding and augmentation, bf16), against the
   training limit (target >= 80%);
5. ``pedlib rank`` end to end on the JPEG folder, against the fp32 inference limit;
6. how much the precision moves scores: LogME and LogME + PED of bf16 and fp16 features,
   relative to fp32, on the same images.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from pedlib import metrics, ped
from pedlib.models.paper import SSL_MODELS
from pedlib.models.torch_backbone import PRECISIONS, exact_float32, memory_format_for


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _make_jpeg(folder: Path, i: int, classes: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng([seed, i])
    label = i % classes
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    phase = rng.uniform(0, 6.28, size=3)
    base = 127 + 100 * np.sin(xx[..., None] / (30 + 10 * label) + yy[..., None] / 45 + phase)
    image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(folder / f"c{label}" / f"{i:05d}.jpg", quality=90)


def make_jpegs(folder: Path, n: int, classes: int = 8, seed: int = 0, processes: int = 1) -> Path:
    """``n`` 500x375 JPEGs (smooth colour fields plus noise, ~100 KB each) in ``classes``
    folders; image ``i`` is seeded by ``(seed, i)``, so the files do not depend on ``processes``."""
    for label in range(min(classes, n)):
        (folder / f"c{label}").mkdir(parents=True, exist_ok=True)
    if processes <= 1:
        for i in range(n):
            _make_jpeg(folder, i, classes, seed)
        return folder
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_make_jpeg, [folder] * n, range(n), [classes] * n, [seed] * n, chunksize=32))
    return folder


def make_checkpoints(folder: Path, names) -> None:
    """A random ResNet-50 state dict per name, where the paper-ssl zoo reads its checkpoints."""
    import torchvision

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        torch.manual_seed(i)
        state = {k: v.half() if v.is_floating_point() else v
                 for k, v in torchvision.models.resnet50().state_dict().items()}
        torch.save(state, folder / f"{name}.pth")


def raw_inference(device, precision: str, batch: int, size: int, repeats: int) -> float:
    """Images/s of a ResNet-50's pooled features on a device-resident batch (no data loading),
    in the layout extraction uses for ``precision`` (``memory_format_for``)."""
    import torchvision

    layout = memory_format_for(device, precision)
    net = torchvision.models.resnet50().to(device).eval().to(memory_format=layout)
    net.fc = torch.nn.Identity()
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=layout)
    dtype = PRECISIONS[precision]
    context = exact_float32 if dtype is None else (lambda: torch.autocast(device.type, dtype=dtype))
    with torch.no_grad(), context():
        for _ in range(2):
            net(x)
        sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            net(x)
        sync(device)
    return batch * repeats / (time.perf_counter() - started)


def raw_training(device, batch: int, size: int, repeats: int) -> float:
    """Images/s of ResNet-50 training steps (bf16 autocast on CUDA, channels-last, SGD)."""
    import torchvision

    net = torchvision.models.resnet50(num_classes=100).to(device).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (batch,), device=device)
    started = 0.0
    for step in range(repeats + 2):
        if step == 2:
            sync(device)
            started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return batch * repeats / (time.perf_counter() - started)


def study_params(root: Path, images: Path, models, args, **extract) -> Path:
    params = {
        "study": "bench", "models": list(models), "seed": 0,
        "datasets": {"bench": {"type": "imagefolder", "root": str(images), "test_fraction": 0.5}},
        "extract": {"batch_size": args.batch_size, "threads": args.threads, "device": args.device,
                    "workers": args.workers, "precision": "fp32", **({"image_size": args.size} if args.quick else {}),
                    **extract},
        "groundtruth": {"finetune": {
            "protocol": "sweep", "learning_rates": [0.01], "weight_decays": [0.0], "steps": args.steps,
            "batch_size": args.train_batch, "seeds": [0], "device": args.device, "workers": args.workers,
            "threads": args.threads, "checkpoint_every": 10 ** 6, "augment": True}},
        "metrics": ["logme"], "sensitivity": None, "ports": None,
        "reference": {"mode": "none", "ablation": []},
        "evaluation": {"groundtruth": ["finetune"], "bootstrap": 0},
    }
    (root / "params").mkdir(parents=True, exist_ok=True)
    path = root / "params" / "bench.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def timed_extract(params: Path, parts=("train", "test")) -> tuple[float, int]:
    """(seconds, images) of Study.extract with the models loaded and warmed up, and the decoder
    too (on CUDA, the first batch a process decodes sets nvJPEG up)."""
    from pedlib.data.loader import decoded_batches
    from pedlib.study import Study

    study = Study.load(params, progress=False)
    indices = np.concatenate([study.indices("bench", part) for part in parts])
    ex = study.params.extract
    warm = next(iter(decoded_batches(study.source("bench"), [indices[:ex.batch_size]], device=study.device,
                                     workers=0, gpu_decode=ex.gpu_decode)))
    for model in study.models:  # load (and autotune) outside the timing
        study.backbone(model).features_of(warm)
    sync(study.device)
    started = time.perf_counter()
    study.extract(parts=parts)
    sync(study.device)
    return time.perf_counter() - started, len(indices)


def timed_sweep_job(params: Path) -> tuple[float, int]:
    """(seconds, images) of one grid job's training steps, after 10 warm-up steps."""
    from pedlib.groundtruth import sweep
    from pedlib.study import Study

    study = Study.load(params, progress=False)
    config = study.finetuning.sweep_config()
    fit, _ = study.finetuning.sweep_split("bench")
    backbone = study.backbone(study.models[0])
    marks = {}

    def on_step(done):
        if done in (10, config.steps):
            sync(study.device)
            marks[done] = time.perf_counter()

    sweep.train(backbone, study.source("bench"), fit, learning_rate=0.01, weight_decay=0.0, seed=0,
                config=config, on_step=on_step)
    return marks[config.steps] - marks[10], (config.steps - 10) * config.batch_size


def precision_effect(params: Path, precision: str) -> tuple[float, float]:
    """LogME and LogME + PED of one model's train features at ``precision``."""
    from pedlib.study import Study

    study = Study.load(params, progress=False)
    study.extract(parts=("train",))
    train = study.features(study.models[0], "bench", "train")
    x = train["features"].astype(np.float64)
    return metrics.logme(x, train["labels"]), ped.score(x, train["labels"], "logme")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke test of the script)")
    parser.add_argument("--images", type=int, default=4096, help="generated JPEGs")
    parser.add_argument("--models", type=int, default=12, help="ResNet-50s fed from one decode")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=160, help="sweep job steps (10 of them warm-up)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.models, args.batch_size, args.train_batch = 32, 2, 8, 4
        args.steps, args.size, args.workers = 12, 32, 0
    device = torch.device(args.device)
    root = Path(args.keep or tempfile.mkdtemp(prefix="pedlib-bench-gpu-"))
    rows = []

    def row(what, measured, limit=None, unit="img/s"):
        share = f"{measured / limit:.0%}" if limit else ""
        rows.append(f"| {what} | {measured:,.1f} {unit} | {f'{limit:,.1f} {unit}' if limit else ''} | {share} |")
        print(f"measured: {what}: {measured:,.1f} {unit}", file=sys.stderr, flush=True)  # progress; the table comes once, at the end

    started = time.perf_counter()
    images = make_jpegs(root / "images", args.images, classes=4 if args.quick else 8,
                         processes=os.cpu_count() or 1)
    names = list(SSL_MODELS)[:args.models]
    os.environ["PEDLIB_MODELS"] = str(root / "models")
    make_checkpoints(root / "models", names)
    print(f"generated {args.images} JPEGs and {len(names)} checkpoints in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)

    repeats = 2 if args.quick else 20
    limits = {p: raw_inference(device, p, args.batch_size, args.size, repeats) for p in PRECISIONS}
    for precision, rate in limits.items():
        layout = "NCHW" if memory_format_for(device, precision) == torch.contiguous_format else "channels-last"
        row(f"raw inference, ResNet-50, {precision} {layout}, batch {args.batch_size} on the device", rate)
    train_limit = raw_training(device, args.train_batch, args.size, 2 if args.quick else 30)
    row(f"raw training steps, ResNet-50, bf16 autocast, batch {args.train_batch}", train_limit)

    seconds, n = timed_extract(study_params(root / "one", images, names[:1], args))
    row("Study.extract, 1 ResNet-50, fp32, JPEGs decoded on the device", n / seconds, limits["fp32"])
    seconds, n = timed_extract(study_params(root / "many", images, names, args))
    row(f"Study.extract, {len(names)} ResNet-50s from one decode, fp32", n / seconds, limits["fp32"] / len(names))
    seconds, n = timed_sweep_job(study_params(root / "sweep", images, names[:1], args))
    row("sweep job training steps (device decode + augmentation, bf16)", n / seconds, train_limit)

    from pedlib.rank import rank_models

    checkpoint = root / "models" / f"{names[0]}.pth"
    started = time.perf_counter()
    result = rank_models(images, [f"resnet50={checkpoint}"], out=root / "rank", device=args.device,
                         batch_size=args.batch_size, progress=False, workers=args.workers)
    row("pedlib rank, 1 ResNet-50 checkpoint, end to end", len(result.indices) / (time.perf_counter() - started),
        limits["fp32"])

    scores = {p: precision_effect(study_params(root / f"precision-{p}", images, names[:1], args, precision=p), p)
              for p in PRECISIONS}
    for precision in ("bf16", "fp16"):
        for i, what in enumerate(("LogME", "LogME + PED")):
            relative = abs(scores[precision][i] - scores["fp32"][i]) / abs(scores["fp32"][i])
            rows.append(f"| {what} of {precision} features vs fp32 | {scores[precision][i]:.4f} vs "
                        f"{scores['fp32'][i]:.4f} | | {relative:.2%} relative |")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{name}; {args.images} JPEGs of 500x375 at {args.size} px\n")
    print("| what | measured | limit | share |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
