"""What the data-parallel tests run inside each worker process (importable by name: workers are spawned).

Every function takes the worker's :class:`dlir.train.world.World` first, as
:func:`dlir.train.launch.run_workers` calls it, and returns plain numpy values.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

DROPOUT_MLP = """
use nn
model Net(x: f32[B, 1, 8, 8]) -> f32[B, 10] {
    fc1 = Dense(64, 32, act="relu")
    fc2 = Dense(32, 10)
    return fc2(dropout(fc1(reshape(x, [B, 64])), 0.3))
}
model Loss(x: f32[B, 1, 8, 8], labels: i64[B]) -> f32[] {
    net = Net()
    return cross_entropy(net(x), labels)
}
"""

BATCH_NORM_MLP = """
use nn
model Loss(x: f32[B, 1, 8, 8], labels: i64[B]) -> f32[] {
    fc1 = Dense(64, 16)
    bn = BatchNorm1d(16)
    fc2 = Dense(16, 10)
    return cross_entropy(fc2(relu(bn(fc1(reshape(x, [B, 64]))))), labels)
}
"""

ROWS = 150  # digits rows: batch 29 leaves a last batch of 5, split 3 + 2
BATCH = 29


def small_digits() -> Any:
    from dlir.train.data import digits

    d = digits()
    return dataclasses.replace(d, x_train=d.x_train[:ROWS], y_train=d.y_train[:ROWS])


def train(
    world: Any, source: str, targets: list[str], epochs: int, optimizer: str = "adam", steps: int | None = None
) -> dict[str, Any]:
    """Each target's params, buffers and losses after ``epochs`` on :func:`small_digits`
    (``world`` None: one process)."""
    import dlir
    from dlir.train.optim import make_optimizer
    from dlir.train.trainer import Trainer

    graph = dlir.loads(source).graph("Loss")
    out = {}
    for target in targets:
        opt = make_optimizer(optimizer, lr=0.01)
        t = Trainer(graph, opt, target, seed=3, world=world)
        t.fit(small_digits(), epochs, BATCH, max_steps=steps)
        out[target] = {"params": dict(t.params), "buffers": dict(t.buffers), "losses": list(t.losses)}
    return out


def train_then_die(world: Any, dying_rank: int) -> None:
    """Train; the worker ``dying_rank`` kills itself (SIGKILL) in its third step."""
    import dlir
    from dlir.train.optim import make_optimizer
    from dlir.train.trainer import Trainer

    t = Trainer(dlir.loads(DROPOUT_MLP).graph("Loss"), make_optimizer("sgd", lr=0.1), "torch", world=world)
    step = t.step

    def dying_step(*args: Any, **kwargs: Any) -> float:
        if world.rank == dying_rank and len(t.losses) == 2:
            os.kill(os.getpid(), 9)
        return step(*args, **kwargs)

    t.step = dying_step  # type: ignore[method-assign]
    t.fit(small_digits(), 1, BATCH)


def ddp_generated_torch(world: Any, module_path: str, class_name: str, steps: int) -> dict[str, np.ndarray]:
    """The generated torch module under DistributedDataParallel, trained with torch.autograd and SGD
    on this worker's half of each global batch; returns its state dict."""
    import importlib.util

    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    spec = importlib.util.spec_from_file_location("generated_net", module_path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = getattr(mod, class_name)(seed=0)
    model = net if world is None else DistributedDataParallel(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    d = small_digits()
    size, rank = (1, 0) if world is None else (world.size, world.rank)
    for i in range(steps):
        rows = np.arange(i * 32, (i + 1) * 32)
        mine = np.array_split(rows, size)[rank]  # equal halves: DDP averages the workers' gradients
        x, y = torch.from_numpy(d.x_train[mine]), torch.from_numpy(d.y_train[mine])
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def tf_mirrored(module_path: str, class_name: str, steps: int, out_path: str) -> None:
    """The generated tf module trained with GradientTape and SGD alone, then under a
    MirroredStrategy over two logical CPUs (each replica on half of every global batch);
    both sets of weights go to ``out_path`` (.npz). Run in a fresh process: the logical
    devices must be set up before TensorFlow starts."""
    import importlib.util

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    spec = importlib.util.spec_from_file_location("generated_net", module_path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = small_digits()
    out: dict[str, np.ndarray] = {}
    for name, strategy in (
        ("alone", tf.distribute.get_strategy()),
        ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
    ):
        with strategy.scope():
            net = getattr(mod, class_name)(seed=0)
        variables = [getattr(net, attr) for attr in net.PARAMS.values()]

        def gradients(x: Any, y: Any, net: Any = net, variables: Any = variables) -> Any:
            with tf.GradientTape() as tape:
                per_row = tf.nn.sparse_softmax_cross_entropy_with_logits(y, net(x))
                loss = tf.nn.compute_average_loss(per_row, global_batch_size=32)
            return tape.gradient(loss, variables)

        for i in range(steps):
            rows = np.arange(i * 32, (i + 1) * 32)
            x, y = d.x_train[rows], d.y_train[rows]
            if name == "alone":
                grads = gradients(tf.constant(x), tf.constant(y))
            else:
                halves = np.array_split(np.arange(32), 2)
                dx, dy = (
                    strategy.experimental_distribute_values_from_function(
                        lambda ctx, a=a: tf.constant(a[halves[ctx.replica_id_in_sync_group]])
                    )
                    for a in (x, y)
                )
                per_replica = strategy.run(gradients, args=(dx, dy))
                grads = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in per_replica]
            for v, g in zip(variables, grads, strict=True):
                v.assign_sub(0.1 * g)
        out.update({f"{name}/{k}": v for k, v in net.get_params().items()})
    np.savez(out_path, **out)
