"""One Adam over a stack, read and written per model: each model's part is its own Adam's."""

import torch

from trainables import stacked_adam


def adam_over(parameters: list[torch.Tensor]) -> torch.optim.Adam:
    return torch.optim.Adam(parameters, lr=0.1, betas=(0.5, 0.9))


def step(optimizer: torch.optim.Adam, parameters: list[torch.Tensor], gradients: list[torch.Tensor]) -> None:
    for p, g in zip(parameters, gradients):
        p.grad = g.clone()
    optimizer.step()


def test_a_models_part_is_its_own_adams_state_and_the_parts_stack_back():
    generator = torch.Generator().manual_seed(0)
    stack = [torch.randn(shape, generator=generator).requires_grad_() for shape in ((3, 4, 2), (3, 5))]
    singles = [[p[i].detach().clone().requires_grad_() for p in stack] for i in range(3)]
    optimizer, own = adam_over(stack), [adam_over(s) for s in singles]
    for _ in range(2):
        gradients = [torch.randn(p.shape, generator=generator) for p in stack]
        step(optimizer, stack, gradients)
        for i in range(3):
            step(own[i], singles[i], [g[i] for g in gradients])
    for i in range(3):
        part = stacked_adam.model_state(optimizer.state_dict(), i)
        expected = own[i].state_dict()
        for k, entry in expected["state"].items():
            for key, value in entry.items():
                torch.testing.assert_close(part["state"][k][key], value)
    parts = [stacked_adam.model_state(optimizer.state_dict(), i) for i in range(3)]
    restored = adam_over([p.detach().clone().requires_grad_() for p in stack])
    restored.load_state_dict(stacked_adam.stacked_state(parts))
    for k, entry in optimizer.state_dict()["state"].items():
        for key, value in entry.items():
            assert torch.equal(restored.state_dict()["state"][k][key], value)
    # Copies: counting on in the restored optimizer leaves the parts (and the original) as they were.
    assert parts[0]["state"][0]["step"] is not optimizer.state_dict()["state"][0]["step"]


def test_a_cleared_slice_with_zero_gradients_does_not_move():
    stack = [torch.ones(3, 2).requires_grad_()]
    optimizer = adam_over(stack)
    step(optimizer, stack, [torch.ones(3, 2)])
    failed = torch.tensor([1])
    stacked_adam.clear_moments(optimizer, failed)
    before = stack[0].detach().clone()
    stack[0].grad = torch.full((3, 2), float("nan"))
    stacked_adam.zero_gradients(stack, failed)
    stack[0].grad[0].fill_(1.0)
    stack[0].grad[2].fill_(1.0)
    optimizer.step()
    assert torch.equal(stack[0][1], before[1])
    assert not torch.equal(stack[0][0], before[0])
