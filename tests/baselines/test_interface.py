"""The interface every baseline shares (one parametrised file, run on each of the five):
layouts, state passing, padding, gradients, dtype / device, parameters, compilation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call
from torch.utils._pytree import tree_map

import freqnn
from freqnn.baselines import ACTRNN, RHN, AssociativeLSTM, ClockworkRNN, PhasedLSTM

from .conftest import TINY, N, assert_states_equal, build, random_state

TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def test_exported_from_the_package() -> None:
    assert (freqnn.ClockworkRNN, freqnn.PhasedLSTM, freqnn.RHN, freqnn.AssociativeLSTM,
            freqnn.ACTRNN) == (ClockworkRNN, PhasedLSTM, RHN, AssociativeLSTM, ACTRNN)


def test_shapes_of_output_and_state(name: str) -> None:
    model = build(name, num_layers=2)
    out, state = model(torch.randn(7, 4, N, dtype=torch.float64))
    assert out.shape == (7, 4, model.hidden_size)
    per_layer = [v for v in state if v.dim() > 1]
    assert per_layer and all(v.shape[:2] == (2, 4) for v in per_layer)
    # the output is the top layer's h
    torch.testing.assert_close(out[-1], state.h[-1], rtol=0, atol=0)


def test_batch_first_equals_time_first(name: str) -> None:
    model = build(name, num_layers=2)
    bf = build(name, num_layers=2, batch_first=True)
    bf.load_state_dict(model.state_dict())
    x = torch.randn(6, 3, N, dtype=torch.float64)
    state = random_state(model, 3)
    out, final = model(x, state)
    out_bf, final_bf = bf(x.transpose(0, 1).contiguous(), state)
    torch.testing.assert_close(out_bf, out.transpose(0, 1), **TIGHT)
    assert_states_equal(final_bf, final, **TIGHT)


def test_chunks_with_state_passing_equal_one_pass(name: str) -> None:
    model = build(name, num_layers=2)
    x = torch.randn(11, 3, N, dtype=torch.float64)
    whole, final = model(x)
    outs, state = [], None
    for chunk in torch.split(x, [4, 1, 6]):
        out, state = model(chunk, state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs), whole, **TIGHT)
    assert_states_equal(state, final, **TIGHT)


def test_explicit_zero_state_equals_none(name: str) -> None:
    model = build(name)
    x = torch.randn(5, 2, N, dtype=torch.float64)
    _, zero = model(x[:0 + 1])
    zero = type(zero)(*(torch.zeros_like(v) for v in zero))
    out, final = model(x)
    out_z, final_z = model(x, zero)
    torch.testing.assert_close(out_z, out, rtol=0, atol=0)
    assert_states_equal(final_z, final, rtol=0, atol=0)


def test_padded_steps_change_nothing_and_output_zeros(name: str) -> None:
    model = build(name, num_layers=2, batch_first=True)
    lengths = torch.tensor([8, 5, 1, 0])
    x = torch.randn(4, 8, N, dtype=torch.float64)
    start = random_state(model, 4)
    out, final = model(x, start, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[b, n:] == 0)
        alone_state = type(start)(*(v[:, b: b + 1] if v.dim() > 1 else v[b: b + 1]
                                    for v in start))
        if n == 0:  # no valid step: the state is returned unchanged
            got = type(final)(*(v[:, b: b + 1] if v.dim() > 1 else v[b: b + 1] for v in final))
            assert_states_equal(got, alone_state, rtol=0, atol=0)
            continue
        alone, alone_final = model(x[b: b + 1, :n], alone_state)
        torch.testing.assert_close(out[b: b + 1, :n], alone, **TIGHT)
        got = type(final)(*(v[:, b: b + 1] if v.dim() > 1 else v[b: b + 1] for v in final))
        assert_states_equal(got, alone_final, **TIGHT)


def test_full_lengths_equal_no_lengths(name: str) -> None:
    model = build(name)
    x = torch.randn(5, 3, N, dtype=torch.float64)
    out, final = model(x)
    out_l, final_l = model(x, lengths=torch.tensor([5, 5, 5]))
    torch.testing.assert_close(out_l, out, rtol=0, atol=0)
    assert_states_equal(final_l, final, rtol=0, atol=0)


def test_unbatched_input_is_a_batch_of_one(name: str) -> None:
    model = build(name, num_layers=2)
    x = torch.randn(6, N, dtype=torch.float64)
    out, state = model(x)
    out1, state1 = model(x.unsqueeze(1))
    torch.testing.assert_close(out, out1.squeeze(1), rtol=0, atol=0)
    for v, v1 in zip(state, state1, strict=True):
        torch.testing.assert_close(v, v1.squeeze(1 if v1.dim() > 1 else 0), rtol=0, atol=0)
    more, _ = model(x, state)  # an unbatched state continues an unbatched stream
    assert more.shape == (x.shape[0], model.hidden_size)


def test_gradcheck_inputs_state_and_parameters(name: str) -> None:
    model = build(name)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    x = torch.randn(3, 2, N, dtype=torch.float64, requires_grad=True)
    start = random_state(model, 2)
    state_type = type(start)
    floats = [v.clone().requires_grad_() if v.is_floating_point() and v.dim() > 1 else v
              for v in start]

    def fn(x, *args):
        values = dict(zip(names, args[: len(names)], strict=True))
        state = state_type(*args[len(names):])
        out, final = functional_call(model, values, (x, state),
                                     {"lengths": torch.tensor([3, 2])})
        extra = (model.ponder_cost,) if isinstance(model, ACTRNN) else ()
        return (out, *(v for v in final if v.is_floating_point() and v.dim() > 1), *extra)

    assert torch.autograd.gradcheck(fn, (x, *params, *floats), atol=1e-6, fast_mode=True)


def test_float32_module_on_device(name: str, device: str) -> None:
    reference = build(name)
    model = copy.deepcopy(reference).float().to(device)
    x = torch.randn(5, 2, N, device=device)
    out, state = model(x, lengths=torch.tensor([5, 2], device=device))
    assert out.dtype == torch.float32 and out.device.type == device
    assert all(v.device.type == device for v in state)
    out64, _ = reference(x.double().cpu(), lengths=torch.tensor([5, 2]))
    torch.testing.assert_close(out.double().cpu(), out64, rtol=1e-4, atol=1e-5)


def test_double_converts_parameters_and_keeps_buffers(name: str) -> None:
    model = build(name, dtype=torch.float32).double()
    out, _ = model(torch.randn(3, 2, N, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_reset_parameters_draws_again_and_is_seeded(name: str) -> None:
    model = build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    model.reset_parameters()
    after = {k: v.clone() for k, v in model.state_dict().items()}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # every parameter is drawn again; of the buffers, only random ones (the Associative LSTM's
    # permutations, which a small model may draw again unchanged)
    buffers = {k for k, _ in model.named_buffers()}
    assert changed - buffers == {k for k, _ in model.named_parameters()}
    assert all("permutations" in k for k in changed & buffers)
    torch.manual_seed(5)
    model.reset_parameters()
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(("inp", "layers"), [(1, 1), (5, 3)])
def test_parameter_count_closed_form(name: str, inp: int, layers: int) -> None:
    cls, options = TINY[name]
    for hidden in (6, 12):
        model = cls(inp, hidden, layers, **options)
        assert cls.parameter_count(inp, hidden, layers, **options) == sum(
            p.numel() for p in model.parameters())


def test_dropout_between_layers_only_in_training(name: str) -> None:
    model = build(name, num_layers=2, dropout=0.5)
    x = torch.randn(4, 3, N, dtype=torch.float64)
    model.eval()
    first, _ = model(x)
    again, _ = model(x)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    plain = build(name, num_layers=2).eval()  # both in eval mode: Phased LSTM leaks eval_alpha
    torch.testing.assert_close(plain(x)[0], first, rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(x)[0], first)


def test_extra_repr_shows_the_configuration(name: str) -> None:
    text = repr(build(name, num_layers=2, batch_first=True))
    assert f"{N}, 6, num_layers=2, batch_first=True" in text


def test_works_under_torch_compile(name: str) -> None:
    """One graph (fullgraph): no data-dependent Python control flow in the forward."""
    model = build(name)
    x = torch.randn(2, 2, N, dtype=torch.float64)
    lengths = torch.tensor([2, 1])
    out, state = model(x, lengths=lengths)
    cost = model.ponder_cost.detach() if isinstance(model, ACTRNN) else None
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    out_c, state_c = compiled(x, lengths=lengths)
    torch.testing.assert_close(out_c, out, **TIGHT)
    assert_states_equal(state_c, state, **TIGHT)
    if cost is not None:  # ACT runs every ponder step when compiled: the same cost
        torch.testing.assert_close(model.ponder_cost.detach(), cost, **TIGHT)


def test_state_is_a_pytree_of_its_tensors(name: str) -> None:
    """``tree_map(Tensor.detach, state)`` (issue 28, item 8) gives the state's type back."""
    model = build(name, num_layers=2)
    _, state = model(torch.randn(5, 2, N, dtype=torch.float64))
    detached = tree_map(torch.Tensor.detach, state)
    assert type(detached) is type(state)
    assert all(not d.requires_grad and torch.equal(d, s)
               for d, s in zip(detached, state, strict=True))


def test_func_grad_over_functional_call_equals_autograd(name: str) -> None:
    """torch.func.grad through each baseline (issue 28: func.grad for every module)."""
    model = build(name)
    x = torch.randn(4, 2, N, dtype=torch.float64)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(values: dict[str, torch.Tensor]) -> torch.Tensor:
        out, _ = functional_call(model, values, (x,), {"lengths": torch.tensor([4, 3])})
        return out.square().sum()

    got = torch.func.grad(loss)(params)
    model.zero_grad()
    out, _ = model(x, lengths=torch.tensor([4, 3]))
    out.square().sum().backward()
    for key, parameter in model.named_parameters():
        want = torch.zeros_like(parameter) if parameter.grad is None else parameter.grad
        torch.testing.assert_close(got[key], want, **TIGHT)
