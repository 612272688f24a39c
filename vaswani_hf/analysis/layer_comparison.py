"""Table 1 of the paper, measured: one self-attention, one recurrent and one convolutional layer side by side.

Table 1 compares layers that map a sequence of n vectors of width d to another such sequence:

    layer            complexity per layer   sequential operations   maximum path length
    self-attention   O(n^2 · d)             O(1)                    O(1)
    recurrent        O(n · d^2)             O(n)                    O(n)
    convolutional    O(k · n · d^2)         O(1)                    O(log_k(n))

`compare_layers` times one layer of each kind, all d -> d over (B, n, d) inputs: this package's multi-head
self-attention (`VaswaniAttention`, §3.2.2, with its four d x d projections), a one-layer `torch.nn.LSTM` and a
`torch.nn.Conv1d` of kernel width k. It measures forward and backward times and the peak memory of a forward and
backward pass, counts each layer's sequential steps (1, n, 1) and maximum path length, and fits the growth exponent
of every curve in n.

How it measures, and why:

- Every (layer, n) measurement runs in a fresh process, forked from a server process that has already imported torch
  and this package (multiprocessing's forkserver). A fresh process cannot reuse memory freed by an earlier, larger
  measurement (which would hide part of the next one's peak), and forking from the server takes milliseconds where
  importing transformers again would take seconds.
- In that process the layer and its input are built, one forward and backward pass at a tiny length performs the
  kernels' one-time set-up (code loading, oneDNN primitives), then the first pass at length n gives the peak memory,
  then the same pass is timed at least `min_repeats` times and until `min_seconds` have passed (at most
  `max_repeats`); the medians are reported.
- Times are wall-clock (CUDA synchronised before each reading). On a CPU the process's CPU time is recorded too, and
  its share of the wall time (`cpu_share`): with one thread, a share below 1 is time spent waiting for a core that
  other processes held, the first thing to check when a curve looks odd on a shared machine.
- Peak memory on CUDA: `torch.cuda.max_memory_allocated()` minus the memory allocated before the pass.
- Peak memory on a CPU: torch keeps no count of CPU allocations (there is no `max_memory_allocated` for the CPU), so
  the process's resident memory is read from Linux's /proc instead. Right before the pass the peak resident set
  (VmHWM) is reset to the current one (writing 5 to /proc/self/clear_refs); the peak memory is VmHWM after the pass
  minus the resident set (VmRSS) before it: every page the pass made resident, that is the activations kept for the
  backward pass, the gradients, temporaries, allocator overhead and the parameters' gradients (a constant in n). The
  input and the output's gradient, allocated before, are not counted. Linux updates these counts in batches and the C
  allocator may hand out memory it kept from the warm-up pass, so small peaks are exact only to a few MiB. Without
  /proc (not Linux) or without permission to write clear_refs, CPU peak memory is not measured (None).
- All three layers in eval mode, so no dropout; autograd on, as in training; float32; `threads` CPU threads.

Growth exponents: the slope of the least-squares line through (log n, log y) over the upper half of the lengths
(`fit_lengths`), where the leading term of each cost should dominate the fixed overheads. Next to the measured
exponents the report gives the exponent of each layer's forward FLOP count (`forward_flops`) over the same lengths:
self-attention's is below 2 while its n·d^2 projections still weigh as much as its n^2·d attention itself.
"""

import math
import multiprocessing
import os
import statistics
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..configuration_vaswani import VaswaniConfig
from ..modeling_vaswani import VaswaniAttention
from ..provenance import cpu_model, provenance
from .plotting import new_figure, save_png

LAYERS = ("self_attention", "recurrent", "convolutional")
# Per layer: (complexity per layer, sequential operations, maximum path length), as printed in Table 1.
TABLE_1 = {
    "self_attention": ("O(n^2·d)", "O(1)", "O(1)"),
    "recurrent": ("O(n·d^2)", "O(n)", "O(n)"),
    "convolutional": ("O(k·n·d^2)", "O(1)", "O(log_k(n))"),
}
LABELS = {"self_attention": "self-attention", "recurrent": "recurrent (LSTM)", "convolutional": "convolutional"}
DEFAULT_LENGTHS = tuple(2**i for i in range(4, 13))  # 16, 32, ..., 4096
MIB = 2**20


@dataclass(frozen=True)
class Settings:
    """What `compare_layers` measures. The defaults are the paper's base width (d 512, 8 heads), a kernel of 3, and a
    batch of 2, whose 8-head 4096 x 4096 float32 attention weights take 1 GiB (a forward and backward pass of the
    attention layer peaks at about three times that)."""

    d_model: int = 512
    num_heads: int = 8
    kernel_size: int = 3
    batch_size: int = 2
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    device: str = "cpu"
    threads: int = 1
    attention: str = "eager"  # "eager" forms the n x n weights as the paper does; "sdpa" may use a fused kernel
    min_repeats: int = 5
    min_seconds: float = 2.0
    max_repeats: int = 100

    def __post_init__(self):
        for name in ("d_model", "num_heads", "kernel_size", "batch_size", "threads", "min_repeats", "max_repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if self.kernel_size % 2 == 0 or self.kernel_size < 3:
            # Padding (k - 1) / 2 on each side keeps n outputs only for an odd width; width 1 joins no positions.
            raise ValueError(f"kernel_size must be odd and at least 3, got {self.kernel_size}")
        if (
            any(isinstance(n, bool) or not isinstance(n, int) or n <= 0 for n in self.lengths)
            or len(set(self.lengths)) < 2
        ):
            raise ValueError(f"lengths must be at least two different positive integers, got {self.lengths!r}")
        object.__setattr__(self, "lengths", tuple(sorted(set(self.lengths))))
        if self.attention not in ("eager", "sdpa"):
            raise ValueError(f"attention must be 'eager' or 'sdpa', got {self.attention!r}")
        if self.min_seconds < 0 or self.max_repeats < self.min_repeats:
            raise ValueError("min_seconds must be >= 0 and max_repeats >= min_repeats")

    @property
    def fit_lengths(self) -> tuple[int, ...]:
        """The upper half of the lengths, over which the growth exponents are fitted."""
        return self.lengths[len(self.lengths) // 2 :]


# ---------------------------------------------------------------------------------------------------------------------
# The three layers and their costs by count
# ---------------------------------------------------------------------------------------------------------------------
class SelfAttentionLayer(nn.Module):
    """This package's multi-head self-attention (§3.2.2): queries, keys and values all from the input."""

    def __init__(self, settings: Settings):
        super().__init__()
        config = VaswaniConfig(
            d_model=settings.d_model, num_heads=settings.num_heads, attn_implementation=settings.attention
        )
        self.attention = VaswaniAttention(config, layer_idx=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x)[0]  # (B, n, d) -> (B, n, d)


class RecurrentLayer(nn.Module):
    """One LSTM layer of d units, the recurrent layer of the paper's comparisons (§4)."""

    def __init__(self, settings: Settings):
        super().__init__()
        self.lstm = nn.LSTM(settings.d_model, settings.d_model, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]  # (B, n, d) -> (B, n, d)


class ConvolutionalLayer(nn.Module):
    """One convolution of kernel width k over the positions, padded to keep n outputs."""

    def __init__(self, settings: Settings):
        super().__init__()
        k = settings.kernel_size
        self.conv = nn.Conv1d(settings.d_model, settings.d_model, k, padding=(k - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, n, d) -> (B, d, n) -> (B, d, n) -> (B, n, d)


LAYER_CLASSES = {
    "self_attention": SelfAttentionLayer,
    "recurrent": RecurrentLayer,
    "convolutional": ConvolutionalLayer,
}


def forward_flops(layer: str, n: int, settings: Settings) -> int:
    """Floating-point operations of one forward pass (2 per multiply-add, matrix products only).

    Self-attention: Q, K, V and output projections 4 · 2·B·n·d^2, plus Q K^T and the weighted sum of V 2 · 2·B·n^2·d.
    LSTM: four gates, each a d x d product with the input and one with the previous state, 16·B·n·d^2.
    Convolution: 2·B·n·k·d^2.
    """
    b, d, k = settings.batch_size, settings.d_model, settings.kernel_size
    if layer == "self_attention":
        return 8 * b * n * d * d + 4 * b * n * n * d
    if layer == "recurrent":
        return 16 * b * n * d * d
    return 2 * b * n * k * d * d


def sequential_steps(layer: str, n: int) -> int:
    """Operations of one layer that must run one after another: an LSTM's n time steps, one for the others."""
    return n if layer == "recurrent" else 1


def max_path_length(layer: str, n: int, kernel_size: int) -> int:
    """Layers (or, for the LSTM, time steps) a signal crosses between the two farthest of n positions, as Table 1
    counts them: 1 for self-attention, which joins every pair in one layer; n - 1 steps along the recurrence; and for
    convolutions the depth of a stack of dilated ones (dilations 1, k, k^2, ...), whose receptive field k^L first
    covers n positions at L = ceil(log_k(n)). (Contiguous kernels would need ceil((n - 1) / (k - 1)) layers.)"""
    if layer == "self_attention":
        return 1
    if layer == "recurrent":
        return n - 1
    if kernel_size < 2:
        raise ValueError(f"A convolution of width {kernel_size} never joins two positions")
    depth, field_width = 0, 1
    while field_width < n:  # integers: ceil(log_k(n)) in floating point can be off by one at exact powers
        field_width *= kernel_size
        depth += 1
    return depth


# ---------------------------------------------------------------------------------------------------------------------
# One measurement, in its own process
# ---------------------------------------------------------------------------------------------------------------------
def _proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes, from Linux's /proc/self/status."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0]) * 1024  # "123456 kB"
    return values


def peak_memory(run, device: torch.device) -> int | None:
    """Calls `run()` and returns the peak memory it used in bytes, as the module docstring describes; None for a CPU
    without Linux's /proc (or without permission to reset its peak) and for devices other than CPU and CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        run()
        return None
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current resident set
        before = _proc_status()["VmRSS"]
    except OSError:
        run()
        return None
    run()
    return _proc_status()["VmHWM"] - before


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(layer_name: str, n: int, settings: Settings) -> dict:
    """Peak memory and median times of one forward and backward pass of one layer at length n, in this process."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    device = torch.device(settings.device)
    layer = LAYER_CLASSES[layer_name](settings).to(device).eval()

    def clear_gradients(x: torch.Tensor) -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None

    tiny = torch.randn(1, 4, settings.d_model, device=device, requires_grad=True)  # (1, 4, d)
    layer(tiny).backward(torch.ones_like(tiny))
    # Freed before the memory baseline, so that the measured pass allocates, and counts, its own gradients.
    clear_gradients(tiny)
    x = torch.randn(settings.batch_size, n, settings.d_model, device=device, requires_grad=True)  # (B, n, d)
    grad = torch.randn_like(x)  # (B, n, d): the output's gradient, as the layers above would send it
    peak = peak_memory(lambda: layer(x).backward(grad), device)

    forward_times, backward_times, cpu_times = [], [], []
    started = time.perf_counter()
    while len(forward_times) < settings.max_repeats and (
        len(forward_times) < settings.min_repeats or time.perf_counter() - started < settings.min_seconds
    ):
        clear_gradients(x)
        _synchronize(device)
        cpu_start, t0 = time.process_time(), time.perf_counter()
        output = layer(x)
        _synchronize(device)
        t1 = time.perf_counter()
        output.backward(grad)
        _synchronize(device)
        t2, cpu_end = time.perf_counter(), time.process_time()
        forward_times.append(t1 - t0)
        backward_times.append(t2 - t1)
        cpu_times.append(cpu_end - cpu_start)
    steps = [f + b for f, b in zip(forward_times, backward_times, strict=True)]
    on_cpu = device.type == "cpu"
    return {
        "n": n,
        "forward_s": statistics.median(forward_times),
        "backward_s": statistics.median(backward_times),
        "step_s": statistics.median(steps),
        # On a CPU, the process's CPU time per pass (all its threads); with one thread its share of the wall time
        # is below 1 by the time the process waited for a core that other processes held.
        "step_cpu_s": statistics.median(cpu_times) if on_cpu else None,
        "cpu_share": statistics.median(c / s for c, s in zip(cpu_times, steps, strict=True)) if on_cpu else None,
        "repeats": len(forward_times),
        "peak_memory_bytes": peak,
    }


def _measure_and_send(layer_name: str, n: int, settings: Settings, connection) -> None:
    """The body of a measuring process: sends `measure`'s result, or the traceback of what went wrong."""
    try:
        result = measure(layer_name, n, settings)
    except BaseException:
        result = {"error": traceback.format_exc()}
    connection.send(result)
    connection.close()


def _process_context():
    """Forkserver where the platform has it (fresh processes that start with torch and this package imported), else
    spawn (fresh processes that import them again)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def measure_in_fresh_process(layer_name: str, n: int, settings: Settings, context=None) -> dict:
    """`measure` in a process of its own (see the module docstring).

    Raises:
        RuntimeError: with the measuring process's traceback, or its exit code if it died (e.g. killed when out of
            memory).
    """
    context = context or _process_context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_measure_and_send, args=(layer_name, n, settings, sender), daemon=True)
    process.start()
    sender.close()  # the child holds the only sending end now, so its death ends recv() with EOFError
    try:
        result = receiver.recv()
    except EOFError:
        process.join()
        hint = " (killed: out of memory? lower the batch size or the lengths)" if process.exitcode == -9 else ""
        raise RuntimeError(f"Measuring {layer_name} at n={n} died with exit code {process.exitcode}{hint}") from None
    finally:
        receiver.close()
    process.join()
    if "error" in result:
        raise RuntimeError(f"Measuring {layer_name} at n={n} failed:\n{result['error']}")
    return result


# ---------------------------------------------------------------------------------------------------------------------
# The comparison, its fit and its report
# ---------------------------------------------------------------------------------------------------------------------
def fit_exponent(lengths, values, fit_lengths=None) -> float | None:
    """The exponent p of values ≈ c · n^p: the slope of the least-squares line through (log n, log value).

    Only the points with n in `fit_lengths` (default: all) and a positive value count; None when fewer than two do.
    """
    points = [
        (math.log(n), math.log(value))
        for n, value in zip(lengths, values, strict=True)
        if value is not None and value > 0 and (fit_lengths is None or n in fit_lengths)
    ]
    if len({x for x, _ in points}) < 2:
        return None
    x, y = np.array(points).T  # (P,) each
    slope, _ = np.polyfit(x, y, 1)
    return float(slope)


def device_name(device: str) -> str:
    """The accelerator's or the CPU's model name, for the record."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def compare_layers(settings: Settings, progress=print) -> dict:
    """Measures the three layers at every length (see the module docstring) and returns the report: settings,
    `fit_lengths`, and per layer its Table 1 entries, its measurements (with the forward FLOPs, sequential steps and
    maximum path length at each n) and the fitted exponents. `progress(line)` is called after each measurement."""
    context = _process_context()
    measurements = {name: [] for name in LAYERS}
    started, load_at_start = time.perf_counter(), _load_average()
    for n in settings.lengths:
        for name in LAYERS:
            row = measure_in_fresh_process(name, n, settings, context)
            row |= {
                "forward_flops": forward_flops(name, n, settings),
                "sequential_steps": sequential_steps(name, n),
                "max_path_length": max_path_length(name, n, settings.kernel_size),
            }
            measurements[name].append(row)
            memory = "n/a" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / MIB:.1f} MiB"
            share = "" if row["cpu_share"] is None else f", CPU share {row['cpu_share']:.2f}"
            progress(
                f"{name:>14} n={n:<5} forward {row['forward_s'] * 1e3:9.2f} ms  backward {row['backward_s'] * 1e3:9.2f}"
                f" ms  peak {memory} ({row['repeats']} repeats{share})"
            )
    report = summarize(settings, measurements)
    # How busy the machine was: timings on a shared machine are only as good as its quiet.
    report |= {"wall_seconds": time.perf_counter() - started, "load_average": [load_at_start, _load_average()]}
    return report


def _load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, where the system has them."""
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def summarize(settings: Settings, measurements: dict[str, list[dict]]) -> dict:
    """The report of `compare_layers` from its measurements: fits the exponents over `settings.fit_lengths`."""
    layers = {}
    for name in LAYERS:
        rows = measurements[name]
        lengths = [row["n"] for row in rows]
        exponents = {
            key: fit_exponent(lengths, [row[column] for row in rows], settings.fit_lengths)
            for key, column in (
                ("forward_time", "forward_s"),
                ("backward_time", "backward_s"),
                ("step_time", "step_s"),
                ("step_cpu_time", "step_cpu_s"),
                ("peak_memory", "peak_memory_bytes"),
                ("forward_flops", "forward_flops"),
            )
        }
        complexity, sequential, path = TABLE_1[name]
        layers[name] = {
            "table_1": {
                "complexity_per_layer": complexity,
                "sequential_operations": sequential,
                "max_path_length": path,
            },
            "exponents": exponents,
            "measurements": rows,
        }
    return {
        "settings": asdict(settings) | {"lengths": list(settings.lengths)},
        "fit_lengths": list(settings.fit_lengths),
        "device_name": device_name(settings.device),
        "provenance": provenance(),
        "layers": layers,
    }


def _format_exponent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_table(report: dict) -> str:
    """The report as plain-text tables: times and memory per length, then Table 1 next to the fitted exponents."""
    settings = report["settings"]
    layers = report["layers"]
    short = {"self_attention": "attention", "recurrent": "LSTM", "convolutional": "conv"}
    names = list(layers)
    columns = " ".join(f"{short[name]:>10}" for name in names)
    lines = [
        f"d={settings['d_model']}, {settings['num_heads']} heads, kernel k={settings['kernel_size']}, batch "
        f"{settings['batch_size']}, {settings['device']} ({report['device_name']}), {settings['threads']} thread(s), "
        f"attention kernel {settings['attention']}",
        "",
        f"{'':>6} | {'forward + backward (ms)':^32} | {'peak memory (MiB)':^32} | {'sequential steps':^20} | "
        f"{'max path length':^20}",
        f"{'n':>6} | {columns} | {columns} | {'/'.join(short[name] for name in names):^20} | "
        f"{'/'.join(short[name] for name in names):^20}",
    ]
    for i, n in enumerate(settings["lengths"]):
        rows = [layers[name]["measurements"][i] for name in names]
        times = " ".join(f"{row['step_s'] * 1e3:10.2f}" for row in rows)
        memory = " ".join(
            f"{'n/a':>10}" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / MIB:10.1f}"
            for row in rows
        )
        steps = "/".join(str(row["sequential_steps"]) for row in rows)
        paths = "/".join(str(row["max_path_length"]) for row in rows)
        lines.append(f"{n:>6} | {times} | {memory} | {steps:^20} | {paths:^20}")
    lines += [
        "",
        f"growth exponents in n, fitted over n = {', '.join(map(str, report['fit_lengths']))} (FLOPs: forward, "
        "counted; forward, fwd+bwd: wall time; CPU time: of fwd+bwd)",
        f"{'layer':<18} {'Table 1':<12} {'sequential':<11} {'max path':<12} {'FLOPs':>6} {'forward':>8} "
        f"{'fwd+bwd':>8} {'CPU time':>8} {'memory':>7}",
    ]
    for name in names:
        table_1, exponents = layers[name]["table_1"], layers[name]["exponents"]
        lines.append(
            f"{LABELS[name]:<18} {table_1['complexity_per_layer']:<12} {table_1['sequential_operations']:<11} "
            f"{table_1['max_path_length']:<12} {_format_exponent(exponents['forward_flops']):>6} "
            f"{_format_exponent(exponents['forward_time']):>8} {_format_exponent(exponents['step_time']):>8} "
            f"{_format_exponent(exponents['step_cpu_time']):>8} {_format_exponent(exponents['peak_memory']):>7}"
        )
    return "\n".join(line.rstrip() for line in lines)


def plot_comparison(report: dict, path: str | Path, dpi: int = 110) -> Path:
    """Draws forward + backward time and peak memory against n on log-log axes, one line per layer with its fitted
    exponent in the legend, slopes n and n^2 for reference, and the length n = d. Returns the path written.

    Raises:
        ImportError: naming `pip install "vaswani_hf[plots]"` when matplotlib is not installed.
    """
    figure = new_figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots(1, 2)
    settings = report["settings"]
    panels = (
        (axes[0], "step_s", "step_time", 1.0, "forward + backward time (s)"),
        (axes[1], "peak_memory_bytes", "peak_memory", 1 / MIB, "peak memory of forward + backward (MiB)"),
    )
    for axis, column, exponent_key, scale, ylabel in panels:
        top = []
        for name, layer in report["layers"].items():
            points = [(row["n"], row[column] * scale) for row in layer["measurements"] if row[column]]
            if not points:
                continue
            lengths, values = zip(*points, strict=True)
            exponent = layer["exponents"][exponent_key]
            fitted = "" if exponent is None else f": $\\propto n^{{{exponent:.2f}}}$"
            axis.plot(lengths, values, "o-", label=LABELS[name] + fitted)
            top.append(points[-1])
        if top:
            # Reference slopes through the highest last point, over the fitted lengths.
            n_max, y_max = max(top, key=lambda point: point[1])
            fit = np.array(report["fit_lengths"], dtype=float)
            for power, style in ((1, ":"), (2, "--")):
                axis.plot(
                    fit,
                    y_max * (fit / n_max) ** power,
                    style,
                    color="gray",
                    lw=1,
                    label=f"$\\propto n^{power}$, for reference",
                )
        axis.axvline(settings["d_model"], color="gray", lw=0.8, alpha=0.5)
        axis.text(settings["d_model"], 0.02, " n = d", transform=axis.get_xaxis_transform(), color="gray", fontsize=8)
        axis.set_xscale("log", base=2)
        axis.set_xticks(settings["lengths"], [str(n) for n in settings["lengths"]])
        axis.set_yscale("log")
        axis.set_xlabel("sequence length n")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
    figure.suptitle(
        f"One layer, d = {settings['d_model']}, batch {settings['batch_size']}, {settings['device']}; exponents fitted "
        f"over n = {report['fit_lengths'][0]}..{report['fit_lengths'][-1]}",
        fontsize=10,
    )
    return save_png(figure, path, dpi=dpi)
