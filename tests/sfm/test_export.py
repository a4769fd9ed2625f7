"""The export path (freqnn.sfm.export): under torch.export every recurrence is torch's scan
operator with a symbolic T (ParallelSFM: its chunked scan, the chunks joined by torch's scan);
the saved program and an AOTInductor package run in a process that never imports freqnn; the
dynamo ONNX exporter emits a Scan that onnxruntime runs at any length.

Exports take seconds each (tracing, not the model's size): the models are tiny."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch.export import Dim

import freqnn
from freqnn.baselines import ACTRNN, RHN, AssociativeLSTM, ClockworkRNN, PhasedLSTM

N, M, B = 3, 4, 3
TOL = {"rtol": 1e-5, "atol": 1e-5}

#: every module whose time loop runs under export, as (name, constructor)
MODULES = {
    "sfm": lambda: freqnn.SFM(N, M, 3, 2, num_layers=2),
    "asfm": lambda: freqnn.AdaptiveSFM(N, M, 3, 2),
    "asfm-authors": lambda: freqnn.AdaptiveSFM(N, M, 3, 2, phase="authors"),
    "stock": lambda: freqnn.StockSFM(N, M, 2),
    "sfm-bidirectional": lambda: freqnn.SFM(N, M, 3, 2, num_layers=2, bidirectional=True),
    "psfm": lambda: freqnn.ParallelSFM(N, M, 3, 2, num_layers=2),
    "cwrnn": lambda: ClockworkRNN(N, 6, periods=(1, 2, 5)),
    "plstm": lambda: PhasedLSTM(N, M),
    "rhn": lambda: RHN(N, M, depth=2),
    "alstm": lambda: AssociativeLSTM(N, M, copies=2),
    "act": lambda: ACTRNN(N, M, max_ponder=3),
}


class WithTimes(torch.nn.Module):
    """A layer called with (B, T) timestamps (export takes positional inputs)."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, times: torch.Tensor) -> tuple:
        return self.layer(x, times=times)


def assert_outputs_close(got: tuple, want: tuple) -> None:
    torch.testing.assert_close(got[0], want[0], **TOL)
    for g, w in zip(got[1], want[1], strict=True):  # the state, a plain tuple from the program
        assert (g is None) == (w is None)
        if g is not None:
            torch.testing.assert_close(g, w, **TOL)


def export_symbolic(module: torch.nn.Module, T: int = 5) -> torch.export.ExportedProgram:
    return torch.export.export(module, (torch.randn(T, B, N),),
                               dynamic_shapes={"x": {0: Dim("T")}})


@pytest.mark.parametrize("name", MODULES)
def test_export_keeps_T_symbolic(name):
    module = MODULES[name]().eval()
    program = export_symbolic(module)
    graph = str(program.graph)
    assert "torch.ops.higher_order.scan" in graph and "freqnn" not in graph
    for T in (1, 9):  # other lengths than the example's, T = 1 and T = B included
        x = torch.randn(T, B, N)
        assert_outputs_close(program.module()(x), module(x))


@pytest.mark.parametrize("name", ["sfm", "asfm", "plstm"])
def test_export_with_times_of_shape_B_T_and_min_2(name):
    """Item 5: times (B, T) with Dim("T", min=2) once guarded T != B."""
    module = WithTimes(MODULES[name]().eval())
    T = Dim("T", min=2)
    program = torch.export.export(
        module, (torch.randn(6, B, N), torch.rand(B, 6).cumsum(1)),
        dynamic_shapes={"x": {0: T}, "times": {1: T}})
    for steps in (2, B):
        x, times = torch.randn(steps, B, N), torch.rand(B, steps).cumsum(1) * 3
        assert_outputs_close(program.module()(x, times), module(x, times))


def test_export_with_lengths_and_state():
    """Padded batches and a state passed in (as the plain tuple an exported layer returns)."""
    module = MODULES["sfm-bidirectional"]().eval()
    x = torch.randn(6, B, N)
    # clones: state.time is a view of the timestamps, whose size export would tie to T
    state = module(x)[1]._replace(time=module(x)[1].time.clone())

    class Padded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = module

        def forward(self, x, lengths, z, re, im, time):
            return self.layer(x, (z, re, im, time, None), lengths=lengths)

    args = (x, torch.tensor([6, 2, 4]), state.z, state.re, state.im, state.time)
    program = torch.export.export(Padded(), args, dynamic_shapes=(
        {0: Dim("T")}, None, None, None, None, None))
    x9, lengths = torch.randn(9, B, N), torch.tensor([9, 0, 3])
    assert_outputs_close(program.module()(x9, lengths, *args[2:]),
                         module(x9, state, lengths=lengths))


def run_without_freqnn(script: str) -> None:
    """Run ``script`` in a fresh interpreter and fail if it imported freqnn."""
    check = "\nimport sys\nassert 'freqnn' not in sys.modules, 'freqnn was imported'\n"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script) + check],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("name", ["asfm", "psfm"])
def test_saved_program_runs_without_freqnn(name, tmp_path):
    module = MODULES[name]().eval()
    torch.export.save(export_symbolic(module), tmp_path / "sfm.pt2")
    x = torch.randn(11, B, N)
    torch.save(x, tmp_path / "x.pt")
    run_without_freqnn(f"""
        import torch
        program = torch.export.load({str(tmp_path / "sfm.pt2")!r})
        out, state = program.module()(torch.load({str(tmp_path / "x.pt")!r}))
        torch.save((out, state), {str(tmp_path / "out.pt")!r})
    """)
    assert_outputs_close(torch.load(tmp_path / "out.pt"), module(x))


@pytest.mark.slow  # AOTInductor compiles C++ (about 30 s on two cores)
def test_aoti_package_runs_without_freqnn(tmp_path):
    module = MODULES["sfm"]().eval()
    package = torch._inductor.aoti_compile_and_package(
        export_symbolic(module), package_path=str(tmp_path / "sfm_aoti.pt2"))
    x = torch.randn(13, B, N)
    torch.save(x, tmp_path / "x.pt")
    run_without_freqnn(f"""
        import torch
        run = torch._inductor.aoti_load_package({package!r})
        torch.save(run(torch.load({str(tmp_path / "x.pt")!r})), {str(tmp_path / "out.pt")!r})
    """)
    assert_outputs_close(torch.load(tmp_path / "out.pt"), module(x))


@pytest.mark.parametrize("name", ["asfm", "rhn", "psfm"])
def test_onnx_scan_runs_at_any_length(name, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    module = MODULES[name]().eval()
    path = tmp_path / "model.onnx"
    torch.onnx.export(module, (torch.randn(5, B, N),), str(path), dynamo=True,
                      dynamic_shapes={"x": {0: Dim("T")}})
    graph = onnx.load(str(path)).graph
    assert "Scan" in {node.op_type for node in graph.node}
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # T symbolic, not 5
    session = ort.InferenceSession(str(path))
    for T in (2, 17):  # ParallelSFM: within one chunk of 16 steps and across two
        x = torch.randn(T, B, N)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        torch.testing.assert_close(torch.from_numpy(got[0]), module(x)[0], **TOL)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_parallel_sfm_exports_across_chunks(bidirectional):
    """Item 4: ParallelSFM's chunked scan under export pads to whole chunks and joins them with
    torch's scan: lengths within one chunk, at and across chunk boundaries (c = 16), padded
    batches, and the fused operator nowhere in the program."""
    module = freqnn.ParallelSFM(N, M, 3, 2, num_layers=2, bidirectional=bidirectional).eval()

    class Padded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = module

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple:
            return self.layer(x, lengths=lengths)

    program = torch.export.export(Padded(), (torch.randn(5, B, N), torch.tensor([5, 2, 3])),
                                  dynamic_shapes=({0: Dim("T")}, None))
    graph = str(program.graph)
    assert "torch.ops.higher_order.scan" in graph and "freqnn" not in graph
    for T in (1, 16, 17, 40):
        x, lengths = torch.randn(T, B, N), torch.tensor([T, max(T - 3, 0), 1])
        assert_outputs_close(program.module()(x, lengths), module(x, lengths=lengths))


def test_parallel_sfm_compiles_with_dynamic_T():
    """torch.compile(dynamic=True, fullgraph=True) keeps the fused operator (one call for the
    whole sequence) and one graph for every length."""
    from torch._dynamo.testing import CompileCounter

    module = freqnn.ParallelSFM(N, M, 3, 2).eval()
    counter = CompileCounter()
    compiled = torch.compile(module, dynamic=True, fullgraph=True, backend=counter)
    for T in (5, 17, 300):
        x = torch.randn(T, B, N)
        assert_outputs_close(compiled(x), module(x))
    assert counter.frame_count == 1


def test_parallel_sfm_legacy_onnx_and_jit_trace_at_a_fixed_T(tmp_path):
    """Legacy ONNX and jit.trace record the sizes of their example (T fixed): they trace the
    PyTorch algorithm (ONNX) or the fused operator (jit.trace) in blocks."""
    ort = pytest.importorskip("onnxruntime")
    module = freqnn.ParallelSFM(N, M, 3, 2, num_layers=2).eval()
    output = OutputOnly(module)
    x = torch.randn(20, B, N)
    path = tmp_path / "legacy.onnx"
    torch.onnx.export(output, (x,), str(path), dynamo=False)
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got[0]), module(x)[0], **TOL)
    traced = torch.jit.trace(output, (x,), check_trace=False)
    torch.testing.assert_close(traced(x), module(x)[0], **TOL)


class OutputOnly(torch.nn.Module):
    """A layer's output alone: jit.trace and legacy ONNX take no None (the state's phase)."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)[0]
