"""Data-parallel training on torch.distributed (DESIGN.md section 9), with real worker processes.

The property: N workers on a global batch write the weights one process writes on
it (dropout included: its masks are keyed by the global sample index); batch norm
keeps per-worker statistics, as DDP without SyncBatchNorm. Workers are started by
dlir.train.launch (torch's elastic launcher, gloo, loopback only).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import dlir
import distributed_workers as workers
from dlir.train.launch import WorkerFailed, run_workers
from dlir.train.optim import SGD, gradient_graph, train_step_graph, update_graph
from dlir.train.trainer import Trainer
from dlir.train.world import World

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["torch", "tensorflow", "onnx"]


def _close(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    assert set(a) == set(b), what
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=f"{what}: {k}")


def test_gradient_and_update_graphs_compose_to_the_step_graph() -> None:
    graph = dlir.loads(workers.DROPOUT_MLP).graph("Loss")
    from dlir.train.modes import train_mode

    train = train_mode(graph).graph
    step = train_step_graph(train, SGD(lr=0.1, momentum=0.9))
    grads = gradient_graph(train)
    update = update_graph(train, SGD(lr=0.1, momentum=0.9))
    assert grads.output_names() == [step.output_names()[0]] + ["grad." + p.name for p in graph.trainable]
    assert [v.name for v in update.inputs] == [p.name for p in graph.trainable] + [
        "grad." + p.name for p in graph.trainable
    ] + ["state.momentum." + p.name for p in graph.trainable] + ["hyper.lr"]
    assert update.output_names() == step.output_names()[1:]


@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_one_worker_world_trains_as_the_fused_step(target: str) -> None:
    """The split step (gradient graph, reduce, update graph) alone gives the fused step's weights."""
    graph = dlir.loads(workers.DROPOUT_MLP).graph("Loss")
    data = workers.small_digits()
    fused = Trainer(graph, SGD(lr=0.1, momentum=0.9), target, seed=3)
    fused.fit(data, 1, workers.BATCH)
    split = Trainer(graph, SGD(lr=0.1, momentum=0.9), target, seed=3, world=World())
    split.fit(data, 1, workers.BATCH)
    _close(dict(fused.params), dict(split.params), "params", rtol=1e-5, atol=1e-6)
    _close(dict(fused.state), dict(split.state), "momentum", rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.losses, split.losses, rtol=1e-6)


@pytest.mark.slow
def test_two_workers_write_the_weights_of_one_on_every_target() -> None:
    """2 epochs, Adam, dropout p=0.3, a last batch of 5 rows split 3 + 2: N=2 equals N=1."""
    start = time.perf_counter()
    got = run_workers(workers.train, (workers.DROPOUT_MLP, TARGETS, 2), nproc=2)
    assert set(got) == {0, 1}
    for target in TARGETS:
        alone = workers.train(None, workers.DROPOUT_MLP, [target], 2)[target]
        for rank in (0, 1):
            mine = got[rank][target]
            _close(mine["params"], alone["params"], f"{target}, rank {rank} vs one process")
            np.testing.assert_allclose(mine["losses"], alone["losses"], rtol=1e-4, err_msg=target)
        assert len(alone["losses"]) == 2 * 6  # 150 rows in batches of 29: the last one (5 rows) counts
    # without the mask keyed by the global row, a worker's dropout would differ: the check above sees it;
    # the masks do matter here (p=0.3 changes the loss curve)
    no_dropout = workers.train(None, workers.DROPOUT_MLP.replace("0.3)", "0.0)"), ["torch"], 2)["torch"]
    assert abs(no_dropout["losses"][0] - alone["losses"][0]) > 1e-3
    assert time.perf_counter() - start < 120


@pytest.mark.slow
def test_batch_norm_statistics_are_per_worker_and_rank_0s_are_kept() -> None:
    """One SGD step of a batch-norm model on 2 workers: each normalises its own shard (as DDP
    without SyncBatchNorm), the gradient is the row-weighted mean of the shards', and the
    running statistics every worker ends with are rank 0's."""
    from dlir.runtime.init import init_params
    from dlir.targets import runner_class
    from dlir.train.modes import train_mode

    got = run_workers(workers.train, (workers.BATCH_NORM_MLP, ["torch"], 1, "sgd", 1), nproc=2)
    graph = dlir.loads(workers.BATCH_NORM_MLP).graph("Loss")
    init = init_params(graph, 3)
    data = workers.small_digits()
    rows = np.random.default_rng(3).permutation(workers.ROWS)[: workers.BATCH]  # fit's first batch
    shards = np.array_split(rows, 2)
    run = runner_class("numpy")(gradient_graph(train_mode(graph).graph))
    grads, bufs = [], []
    for shard in shards:
        feeds = {"x": data.x_train[shard], "labels": data.y_train[shard]}
        outs = run(**feeds, **{p.name: init[p.name] for p in graph.params if p.name in {v.name for v in run.graph.inputs}})
        named = dict(zip(run.graph.output_names(), outs, strict=True))
        grads.append({p.name: named["grad." + p.name] for p in graph.trainable})
        bufs.append({k[4:]: v for k, v in named.items() if k.startswith("new.")})
    lr = 0.01  # workers.train's
    want = {
        p.name: init[p.name] - lr * (len(shards[0]) * grads[0][p.name] + len(shards[1]) * grads[1][p.name]) / len(rows)
        for p in graph.trainable
    }
    for rank in (0, 1):
        _close(got[rank]["torch"]["params"], want, f"rank {rank}'s params")
        _close(got[rank]["torch"]["buffers"], bufs[0], f"rank {rank}'s running statistics (rank 0's shard)")
    assert not np.allclose(bufs[0]["bn.mean"], bufs[1]["bn.mean"])  # the shards' statistics do differ


@pytest.mark.slow
def test_a_killed_worker_stops_the_others_with_an_error_naming_its_rank() -> None:
    start = time.perf_counter()
    with pytest.raises(WorkerFailed, match=r"worker rank 1 failed: killed by SIGKILL"):
        run_workers(workers.train_then_die, (1,), nproc=2)
    assert time.perf_counter() - start < 60


def _dlirc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dlir.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = workers.small_digits()
    path = tmp_path_factory.mktemp("data") / "digits150.npz"
    np.savez(path, x=d.x_train, y=d.y_train, x_test=d.x_test[:60], y_test=d.y_test[:60])
    return path


def _write_model(tmp_path: Path) -> Path:
    path = tmp_path / "m.dlir"
    path.write_text(workers.DROPOUT_MLP)
    return path


def test_nproc_larger_than_the_global_batch_is_refused(tmp_path: Path, small_npz: Path) -> None:
    r = _dlirc("train", str(_write_model(tmp_path)), "--model", "Loss", "--data", str(small_npz), "--epochs", "1",
               "--batch", "3", "--nproc", "4", cwd=tmp_path)
    assert r.returncode == 2
    assert "--batch 3 is the global batch: it cannot be split among 4 workers" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_port_in_use_is_refused(tmp_path: Path, small_npz: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _dlirc("train", str(_write_model(tmp_path)), "--model", "Loss", "--data", str(small_npz), "--epochs",
                   "1", "--nproc", "2", "--rdzv-endpoint", f"127.0.0.1:{port}", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"port {port} on 127.0.0.1 is in use" in r.stderr
    assert "Traceback" not in r.stderr


CLI_COMMON = ["--model", "Loss", "--batch", "29", "--target", "torch", "--val-fraction", "0", "--epochs", "2"]


@pytest.fixture(scope="module")
def alone_weights(tmp_path_factory: pytest.TempPathFactory, small_npz: Path) -> dict[str, np.ndarray]:
    """What one process writes with `dlirc train ... --epochs 2 -o`."""
    from safetensors.numpy import load_file

    tmp = tmp_path_factory.mktemp("alone")
    r = _dlirc("train", str(_write_model(tmp)), "--data", str(small_npz), *CLI_COMMON, "-o", "alone.safetensors",
               cwd=tmp)
    assert r.returncode == 0, r.stderr
    return load_file(tmp / "alone.safetensors")


@pytest.mark.slow
def test_cli_two_workers_resume_and_rank_0_alone_prints_and_writes(
    tmp_path: Path, small_npz: Path, alone_weights: dict[str, np.ndarray]
) -> None:
    """`dlirc train --nproc 2`: epoch 1, then --resume for epoch 2, gives one process's 2-epoch weights."""
    from safetensors.numpy import load_file

    common = ["train", str(_write_model(tmp_path)), "--data", str(small_npz), *CLI_COMMON]
    first = _dlirc(*common, "--epochs", "1", "--nproc", "2", "--checkpoint", "ck.npz", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("epoch 1/1") == 1 and "(2 workers)" in first.stderr  # rank 0 alone prints
    assert first.stdout.count("test accuracy") == 1
    second = _dlirc(*common, "--nproc", "2", "--resume", "ck.npz", "-o", "two.safetensors", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("epoch 2/2") == 1 and "epoch 1/2" not in second.stderr
    assert second.stdout.count("wrote two.safetensors") == 1
    _close(load_file(tmp_path / "two.safetensors"), alone_weights, "weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz", "m.dlir", "two.safetensors"]


@pytest.mark.slow
def test_cli_two_machines_on_loopback(tmp_path: Path, small_npz: Path, alone_weights: dict[str, np.ndarray]) -> None:
    """--nnodes 2: two launchers (node ranks 0 and 1, one worker each) meet at node 0's endpoint."""
    from safetensors.numpy import load_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = [sys.executable, "-m", "dlir.cli", "train", str(_write_model(tmp_path)), "--data", str(small_npz),
              *CLI_COMMON, "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    node0 = subprocess.Popen([*common, "--node-rank", "0", "-o", "w.safetensors"], cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    node1 = subprocess.run([*common, "--node-rank", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    out0, err0 = node0.communicate(timeout=180)
    assert node0.returncode == 0 and node1.returncode == 0, err0 + node1.stderr
    assert "wrote w.safetensors" in out0 and "test accuracy" not in node1.stdout  # node 1 holds rank 1
    _close(load_file(tmp_path / "w.safetensors"), alone_weights, "weights on two nodes")


def _compile_forward(tmp_path: Path, target: str) -> Path:
    out = tmp_path / f"digits_{target}.py"
    r = _dlirc("compile", str(ROOT / "samples" / "digits.dlir"), "--model", "Digits", "--target", target, "-o",
               str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
def test_generated_torch_module_under_ddp_matches_one_process(tmp_path: Path) -> None:
    """A user's own DDP code: the generated nn.Module, torch.autograd, 2 gloo processes."""
    path = str(_compile_forward(tmp_path, "torch"))
    got = run_workers(workers.ddp_generated_torch, (path, "Digits", 3), nproc=2)
    alone = workers.ddp_generated_torch(None, path, "Digits", 3)
    init = {k: v.detach().numpy() for k, v in _load_module(path).Digits(seed=0).state_dict().items()}
    for rank in (0, 1):
        _close(got[rank], alone, f"DDP rank {rank} vs one process")
    assert len(alone) == 8 and all(not np.allclose(alone[k], init[k]) for k in alone if k.endswith(".w"))  # it trained


def _load_module(path: str):  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("generated_check", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_generated_tf_module_under_mirrored_strategy_matches_one_process(tmp_path: Path) -> None:
    path = _compile_forward(tmp_path, "tensorflow")
    out = tmp_path / "weights.npz"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import distributed_workers
        distributed_workers.tf_mirrored({str(path)!r}, "Digits", 3, {str(out)!r})
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                       env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    w = np.load(out)
    alone = {k.split("/", 1)[1]: w[k] for k in w.files if k.startswith("alone/")}
    mirrored = {k.split("/", 1)[1]: w[k] for k in w.files if k.startswith("mirrored/")}
    _close(mirrored, alone, "MirroredStrategy vs one process")
    assert len(alone) == 8


@pytest.mark.slow
def test_bench_scaleout_runs_and_prints_a_row_per_worker_count() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scaleout.py"), "--steps", "3"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split(" | ") for line in r.stdout.splitlines() if line[:2] in ("1 ", "2 ")]
    assert [row[0] for row in rows] == ["1", "2"]
    assert float(rows[1][3]) > 0  # two workers did all-reduce, one did not
    assert float(rows[0][3]) == 0
